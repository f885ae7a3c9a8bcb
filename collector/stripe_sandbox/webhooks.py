"""Signed webhook delivery: ``Stripe-Signature: t=..,v1=..`` over ``"{t}.{body}"``, in order."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

MAX_ATTEMPTS = 3
RETRY_DELAY_SECONDS = 0.2


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """The ``Stripe-Signature`` header value for ``payload`` signed at ``timestamp``."""
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass
class Delivery:
    """One webhook and what became of it."""

    event_id: str
    event_type: str
    payload: bytes
    status: str = "pending"
    attempts: int = 0
    response_status: int | None = None
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "type": self.event_type,
            "status": self.status,
            "attempts": self.attempts,
            "response_status": self.response_status,
            "error": self.error,
        }


@dataclass
class WebhookDispatcher:
    """Queues events and POSTs them one at a time to the configured endpoint.

    The signature timestamp is real wall time (``wall``), because receivers check it against
    their own clock with a 300 s tolerance, whatever the sandbox's simulated time is.
    """

    url: str | None = None
    secret: str | None = None
    wall: Callable[[], float] = time.time
    transport: httpx.AsyncBaseTransport | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    _queue: asyncio.Queue[Delivery] | None = None
    _worker: asyncio.Task[None] | None = None

    def configure(self, url: str | None, secret: str | None) -> None:
        self.url = url
        self.secret = secret

    def enqueue(self, event: dict[str, Any]) -> None:
        """Queue ``event`` for delivery; without a URL it is only recorded as skipped."""
        payload = json.dumps(event, indent=2).encode()
        delivery = Delivery(event["id"], event["type"], payload)
        self.deliveries.append(delivery)
        if not self.url or not self.secret:
            delivery.status = "skipped"
            return
        if self._queue is None:
            self._queue = asyncio.Queue()
        self._queue.put_nowait(delivery)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run())

    async def flush(self, limit_seconds: float = 10.0) -> None:
        """Wait until every queued webhook was delivered or gave up."""
        if self._queue is not None:
            await asyncio.wait_for(self._queue.join(), limit_seconds)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None

    async def _run(self) -> None:
        assert self._queue is not None
        async with httpx.AsyncClient(transport=self.transport, timeout=10.0) as client:
            while True:
                delivery = await self._queue.get()
                try:
                    await self._deliver(client, delivery)
                finally:
                    self._queue.task_done()

    async def _deliver(self, client: httpx.AsyncClient, delivery: Delivery) -> None:
        while delivery.attempts < MAX_ATTEMPTS:
            delivery.attempts += 1
            url, secret = self.url, self.secret
            if not url or not secret:
                delivery.status = "skipped"
                return
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": sign(delivery.payload, secret, int(self.wall())),
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            }
            try:
                response = await client.post(url, content=delivery.payload, headers=headers)
            except httpx.HTTPError as exc:
                delivery.error = f"{type(exc).__name__}: {exc}"
            else:
                delivery.response_status = response.status_code
                if 200 <= response.status_code < 300:
                    delivery.status = "delivered"
                    delivery.error = None
                    return
                delivery.error = f"HTTP {response.status_code}"
            await asyncio.sleep(RETRY_DELAY_SECONDS * delivery.attempts)
        delivery.status = "failed"
