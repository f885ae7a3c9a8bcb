"""Mode ``usage_records``: the legacy API, pinned to the last version that still has it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import stripe

from collector.adapters.stripe.client import (
    LEGACY_API_VERSION,
    Delivered,
    OutgoingEvent,
    outcome_of,
)
from collector.errors import StripePermanent

ACTIONS = {"increment": "increment", "set": "set", "max": "set"}
ItemResolver = Callable[[str, str], Awaitable[str]]


class UsageRecordsSender:
    """``POST /v1/subscription_items/{id}/usage_records`` with ``action`` by semantics.

    ``set`` (on a ``last_during_period`` price) and ``max`` (on a ``max`` price) send the value at
    a timestamp; ``increment`` adds. The Idempotency-Key is the event identifier.
    """

    mode = "usage_records"
    max_events = 1

    def __init__(self, client: stripe.StripeClient, resolve_item: ItemResolver) -> None:
        self._client = client
        self._resolve_item = resolve_item

    async def send(self, events: Sequence[OutgoingEvent]) -> list[Delivered | Exception]:
        return [await self._send_one(event) for event in events]

    async def _send_one(self, event: OutgoingEvent) -> Delivered | Exception:
        try:
            item = await self._resolve_item(event.customer_id, event.lookup_key)
            response = await self._client.raw_request_async(
                "post",
                f"/v1/subscription_items/{item}/usage_records",
                quantity=event.quantity,
                timestamp=int(event.timestamp.timestamp()),
                action=ACTIONS[event.semantics],
                stripe_version=LEGACY_API_VERSION,
                idempotency_key=event.identifier,
            )
        except StripePermanent as exc:
            return exc
        except Exception as exc:
            return outcome_of(exc)
        created = getattr(response, "data", None)
        stripe_id = created.get("id") if isinstance(created, dict) else None
        return Delivered(status=200, stripe_id=str(stripe_id) if stripe_id else None)
