"""Mode ``meter_events``: one ``POST /v1/billing/meter_events`` per event (the default)."""

from __future__ import annotations

from collections.abc import Sequence

import stripe

from collector.adapters.stripe.client import Delivered, OutgoingEvent, outcome_of


class MeterEventsSender:
    """Billing Meters through the v1 API; ``identifier`` makes every resend safe."""

    mode = "meter_events"
    max_events = 1

    def __init__(self, client: stripe.StripeClient) -> None:
        self._client = client

    async def send(self, events: Sequence[OutgoingEvent]) -> list[Delivered | Exception]:
        return [await self._send_one(event) for event in events]

    async def _send_one(self, event: OutgoingEvent) -> Delivered | Exception:
        try:
            await self._client.v1.billing.meter_events.create_async(
                {
                    "event_name": event.event_name,
                    "identifier": event.identifier,
                    "timestamp": int(event.timestamp.timestamp()),
                    "payload": {
                        "stripe_customer_id": event.stripe_customer_id,
                        "value": str(event.quantity),
                    },
                },
                {"idempotency_key": event.identifier},
            )
        except Exception as exc:
            return outcome_of(exc)
        return Delivered(status=200)
