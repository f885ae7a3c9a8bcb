"""Run the Stripe sandbox on loopback and talk to it through the real ``stripe`` SDK."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import stripe

from collector.stripe_sandbox import DEFAULT_API_KEY, SandboxApp, SandboxServer
from common.clock import Clock, ManualClock
from tests.support.binaries import free_port

API_KEY = DEFAULT_API_KEY
"""The one key a test sandbox answers; any other key gets Stripe's 401."""
LEGACY_VERSION = "2025-02-24.acacia"
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class SandboxControl:
    """A small client for the sandbox's ``/_sandbox`` test-control API."""

    def __init__(self, url: str) -> None:
        self._http = httpx.Client(base_url=url, timeout=30.0)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._http.request(method, f"/_sandbox{path}", json=body)
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        self._call("POST", "/reset")

    def faults(self, seed: int | None = None, **settings: Any) -> dict[str, Any]:
        """Set fault settings (see ``FaultConfig``); unspecified ones keep their value."""
        body = dict(settings)
        if seed is not None:
            body["seed"] = seed
        return dict(self._call("POST", "/faults", body))

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def calls(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/calls")["data"])

    def meter_events(self, **filters: str) -> list[dict[str, Any]]:
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        return list(self._call("GET", f"/meter_events?{query}")["data"])

    def usage_records(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/usage_records")["data"])

    def stream_rejections(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/stream_rejections")["data"])

    def now(self) -> int:
        return int(self._call("GET", "/clock")["now"])

    def set_clock(self, now: int) -> None:
        self._call("POST", "/clock", {"now": now})

    def advance_clock(self, seconds: int) -> None:
        self._call("POST", "/clock", {"advance": seconds})

    def advance_period(self, subscription_id: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/subscriptions/{subscription_id}/advance"))

    def fail_payments(self, customer_id: str, fail: bool = True) -> None:
        self._call("POST", f"/customers/{customer_id}/payment_failure", {"fail": fail})

    def error_report(self, meter_id: str, errors: list[dict[str, str]]) -> None:
        self._call("POST", f"/meters/{meter_id}/error_report", {"errors": errors})

    def configure_webhooks(self, url: str | None, secret: str | None) -> None:
        self._call("POST", "/webhooks", {"url": url, "secret": secret})

    def flush_webhooks(self) -> list[dict[str, Any]]:
        return list(self._call("POST", "/webhooks/flush")["data"])

    def webhooks(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/webhooks")["data"])


@dataclass
class Sandbox:
    """A running sandbox: its URL, the in-process app, an SDK client and the control client."""

    url: str
    app: SandboxApp
    client: stripe.StripeClient
    control: SandboxControl
    clock: Clock

    def new_client(self, **options: Any) -> stripe.StripeClient:
        return stripe_client(self.url, **options)


def stripe_client(url: str, **options: Any) -> stripe.StripeClient:
    """A real SDK client whose ``api`` and ``meter_events`` bases point at ``url``."""
    return stripe.StripeClient(
        options.pop("api_key", API_KEY),
        base_addresses={"api": url, "meter_events": url},
        **options,
    )


@contextmanager
def running_sandbox(
    clock: Clock | None = None, seed: int | None = 1, **app_options: Any
) -> Iterator[Sandbox]:
    """Serve a fresh sandbox on a free loopback port for the duration of the block."""
    clock = clock or ManualClock(START)
    app_options.setdefault("api_key", API_KEY)
    app = SandboxApp(clock=clock, seed=seed, **app_options)
    server = SandboxServer(app, "127.0.0.1", free_port())
    with server:
        control = SandboxControl(server.url)
        try:
            yield Sandbox(server.url, app, stripe_client(server.url), control, clock)
        finally:
            control.close()


@pytest.fixture
def sandbox_clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def stripe_sandbox(sandbox_clock: ManualClock) -> Iterator[Sandbox]:
    """A fresh sandbox per test, on a ``ManualClock`` starting at ``START``."""
    with running_sandbox(sandbox_clock) as sandbox:
        yield sandbox
