"""Mode ``meter_event_stream``: v2 sessions, up to 100 events per request, for high volume."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import stripe

from collector.adapters.stripe.client import Delivered, OutgoingEvent, outcome_of
from common.clock import Clock

SESSION_MARGIN = timedelta(seconds=60)


def _parse_time(value: object) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)


class MeterEventStreamSender:
    """Events go in one stream request; a session token is reused until shortly before expiry."""

    mode = "meter_event_stream"
    max_events = 100

    def __init__(
        self,
        client: stripe.StripeClient,
        clock: Clock,
        *,
        api_base: str | None,
        timeout: float = 30.0,
    ) -> None:
        self._client = client
        self._clock = clock
        self._api_base = api_base
        self._timeout = timeout
        self._session: tuple[str, datetime] | None = None
        self._stream_client: stripe.StripeClient | None = None
        self._stream_http: stripe.HTTPXClient | None = None
        self._lock = asyncio.Lock()

    async def _stream(self) -> stripe.StripeClient:
        async with self._lock:
            now = self._clock.now()
            if self._session is None or self._session[1] - SESSION_MARGIN <= now:
                session = await self._client.v2.billing.meter_event_session.create_async()
                self._session = (session.authentication_token, _parse_time(session.expires_at))
                bases = {"meter_events": self._api_base.rstrip("/")} if self._api_base else {}
                await self.aclose()
                self._stream_http = stripe.HTTPXClient(timeout=self._timeout)
                self._stream_client = stripe.StripeClient(
                    session.authentication_token,
                    base_addresses=bases,  # type: ignore[arg-type]
                    http_client=self._stream_http,
                    max_network_retries=0,
                )
            assert self._stream_client is not None
            return self._stream_client

    def needs_call_before_send(self) -> bool:
        """Whether the next send must first open a session (one more call to Stripe)."""
        return self._session is None or self._session[1] - SESSION_MARGIN <= self._clock.now()

    async def prepare(self) -> None:
        try:
            await self._stream()
        except stripe.StripeError:
            self._session = None

    async def aclose(self) -> None:
        if self._stream_http is not None:
            await self._stream_http.close_async()  # type: ignore[no-untyped-call]
            self._stream_http = None

    async def send(self, events: Sequence[OutgoingEvent]) -> list[Delivered | Exception]:
        payload = [
            {
                "event_name": e.event_name,
                "identifier": e.identifier,
                "timestamp": e.timestamp.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                "payload": {"stripe_customer_id": e.stripe_customer_id, "value": str(e.quantity)},
            }
            for e in events
        ]
        try:
            stream = await self._stream()
            await stream.v2.billing.meter_event_stream.create_async({"events": payload})  # type: ignore[typeddict-item]
        except Exception as exc:
            if isinstance(exc, stripe.StripeError) and exc.http_status == 401:
                self._session = None
            outcome = outcome_of(exc)
            return [outcome for _ in events]
        return [Delivered(status=200) for _ in events]
