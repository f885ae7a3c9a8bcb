"""A record of every usage call the Stripe sandbox received, with Stripe's answer to it.

The sandbox's own call log has no request bodies; tests that must prove a timestamp Stripe
refused is never sent again read them here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import parse_qsl

from collector.stripe_sandbox import SandboxApp, SandboxServer
from common.clock import ManualClock
from tests.support.binaries import free_port
from tests.support.stripe_sandbox import (
    Sandbox,
    SandboxControl,
    stripe_client,
)

STRIPE_PAST_LIMIT = timedelta(days=35)


@dataclass(frozen=True)
class SentUsage:
    """One usage event as Stripe received it (one call; a stream call holds several).

    ``target`` is the meter's event name, or the subscription item of a usage record.
    ``status`` is Stripe's HTTP answer to the call (None when the connection was dropped);
    a stream call is answered with success and refuses its events later, asynchronously.
    ``identifier`` is the meter event identifier, or a usage record's idempotency key.
    """

    kind: str
    target: str
    customer: str | None
    identifier: str | None
    value: int
    timestamp: int
    received_at: int
    status: int | None
    error: str | None

    def refused_as_too_old(self) -> bool:
        """Whether Stripe refused (or will refuse) this event for its age.

        Meter events: older than 35 days when received. Usage records: before the item's
        current period (Stripe's answer says so).
        """
        if self.kind == "usage_record":
            return self.status == 400 and "period start" in (self.error or "")
        return self.timestamp < self.received_at - int(STRIPE_PAST_LIMIT.total_seconds())


_USAGE_RECORD_PATH = re.compile(r"^/v1/subscription_items/(?P<item>[^/]+)/usage_records$")


class UsageRecorder:
    """An ASGI wrapper in front of the sandbox that keeps every usage call Stripe received."""

    def __init__(self, app: Any, now: Callable[[], int]) -> None:
        self.app = app
        self._now = now
        self.sent: list[SentUsage] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        usage = scope["type"] == "http" and (
            path in ("/v1/billing/meter_events", "/v2/billing/meter_event_stream")
            or _USAGE_RECORD_PATH.match(path)
        )
        if not usage:
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return dict(await receive())
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        answer: dict[str, Any] = {"status": None, "body": b""}

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            elif message["type"] == "http.response.body":
                answer["body"] += message.get("body", b"")
            await send(message)

        received_at = self._now()
        await self.app(scope, replay, capture)
        key = dict(scope.get("headers") or []).get(b"idempotency-key", b"").decode() or None
        self.sent.extend(
            _parse_usage(path, body, key, received_at, answer["status"], answer["body"])
        )

    def refused_then_resent(self) -> list[tuple[SentUsage, int]]:
        """Events sent again after Stripe refused them as too old, with how often they were."""
        refused: dict[tuple[str, str | None, int], SentUsage] = {}
        again: dict[tuple[str, str | None, int], int] = {}
        for usage in self.sent:
            key = (usage.target, usage.customer, usage.timestamp)
            if key in refused:
                again[key] = again.get(key, 0) + 1
            elif usage.refused_as_too_old():
                refused[key] = usage
        return [(refused[key], count) for key, count in again.items()]


def _error_message(status: int | None, body: bytes) -> str | None:
    if status is None or status < 400:
        return None
    try:
        return str(json.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace")[:300]


def _parse_usage(
    path: str,
    body: bytes,
    idempotency_key: str | None,
    received_at: int,
    status: int | None,
    answer: bytes,
) -> list[SentUsage]:
    error = _error_message(status, answer)
    if path == "/v2/billing/meter_event_stream":
        events = json.loads(body or b"{}").get("events") or []
        return [
            SentUsage(
                "stream",
                str(e.get("event_name")),
                (e.get("payload") or {}).get("stripe_customer_id"),
                e.get("identifier"),
                int((e.get("payload") or {}).get("value", 0)),
                int(datetime.fromisoformat(str(e["timestamp"]).replace("Z", "+00:00")).timestamp()),
                received_at,
                status,
                error,
            )
            for e in events
        ]
    form = dict(parse_qsl(body.decode()))
    if path == "/v1/billing/meter_events":
        return [
            SentUsage(
                "meter_event",
                form.get("event_name", ""),
                form.get("payload[stripe_customer_id]"),
                form.get("identifier"),
                int(form.get("payload[value]", "0")),
                int(form.get("timestamp", received_at)),
                received_at,
                status,
                error,
            )
        ]
    matched = _USAGE_RECORD_PATH.match(path)
    assert matched is not None
    return [
        SentUsage(
            "usage_record",
            matched["item"],
            None,
            idempotency_key,
            int(form.get("quantity", "0")),
            int(form.get("timestamp", received_at)),
            received_at,
            status,
            error,
        )
    ]


@contextmanager
def recorded_sandbox(
    clock: ManualClock, seed: int | None = 1
) -> Iterator[tuple[Sandbox, UsageRecorder]]:
    """A fresh sandbox whose usage calls are recorded, on ``clock`` (shared with the test)."""
    app = SandboxApp(clock=clock, seed=seed)
    recorder = UsageRecorder(app, lambda: int(clock.now().timestamp()))
    server = SandboxServer(cast(SandboxApp, recorder), "127.0.0.1", free_port())
    with server:
        control = SandboxControl(server.url)
        try:
            yield Sandbox(server.url, app, stripe_client(server.url), control, clock), recorder
        finally:
            control.close()


def _utc(seconds: Any) -> datetime:
    return datetime.fromtimestamp(int(seconds), UTC)
