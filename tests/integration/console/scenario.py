"""A realistic collector for the console tests: the Stripe sandbox, four customers, a dead letter.

The collector runs under uvicorn with its forwarder, on the real clock, against the sandbox
through the real ``stripe`` SDK, as ``make demo`` runs it. Reports go in through
``POST /api/usage/report`` with ingest tokens, customers are linked through the API, and:

- ``acme-industrial``: two instances; ``plant-south`` stopped reporting hours ago (silent);
- ``bluefin-logistics``: one window partial (its storage source failed), one unmeasured, and its
  ``api_requests`` batch dead-lettered (Stripe refused it: the meter was deactivated);
- ``coral-health``: never linked; its usage waits, the oldest close to Stripe's 35 days;
- ``delta-grid``: Stripe got a storage event behind the collector's back, so it drifts.

Every linked customer is reconciled once through ``/reconcile`` (the background reconciler is
off, so the figures hold still while a test compares pages with the API).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import stripe

from collector.adapters.stripe.catalog import StripeCatalog
from collector.services.forwarding_setup import stripe_connection
from collector.services.stripe_setup import StripeSetup
from collector.settings import CollectorSettings
from common.clock import SystemClock
from common.schema import UsageReport
from tests.support.collector import RunningCollector, run_collector
from tests.support.credentials import bearer, issue_key, issue_token
from tests.support.stripe_sandbox import API_KEY, running_sandbox

HOUR = timedelta(hours=1)
PRICE_KEYS = ("device_usage", "mqtt_messages", "storage_gb", "api_requests")
ACME, BLUEFIN, CORAL, DELTA = "acme-industrial", "bluefin-logistics", "coral-health", "delta-grid"
LINKED = (ACME, BLUEFIN, DELTA)
DEAD_METER = "api_requests"


@dataclass
class Scene:
    collector: RunningCollector
    sandbox_url: str
    client: stripe.StripeClient
    keys: dict[str, str] = field(default_factory=dict)
    """Operator key secrets by name: viewer, editor, admin, scoped (viewer of acme-industrial)."""
    stripe_customers: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.collector.url

    def api(self, path: str, key: str = "admin", **params: Any) -> Any:
        """``GET path`` on the collector's API as the named key; the JSON answer."""
        response = httpx.get(
            f"{self.url}{path}", params=params, headers=bearer(self.keys[key]), timeout=30
        )
        response.raise_for_status()
        return response.json()

    def reactivate_dead_meter(self) -> None:
        meter = _meter(self.client, DEAD_METER)
        self.client.v1.billing.meters.reactivate(meter["id"])


def wait_until[T](check: Callable[[], T | None], what: str, timeout: float = 60) -> T:
    """Poll ``check`` until it answers (a condition, never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _meter(client: stripe.StripeClient, event_name: str) -> dict[str, Any]:
    meters = client.v1.billing.meters.list({"limit": 100}).data
    return next(m.to_dict() for m in meters if m.event_name == event_name)


def _report(
    customer: str, instance: str, end: datetime, metrics: dict[str, float], **flags: Any
) -> UsageReport:
    return UsageReport(
        customer_id=customer,
        instance_id=instance,
        window_start=end - HOUR,
        window_end=end,
        metrics=metrics,
        **flags,
    )


def reports(now: datetime) -> list[UsageReport]:
    """Six hours of hourly windows, with the gaps and failures the scenario describes."""
    last = now.replace(minute=0, second=0, microsecond=0)
    ends = [last - HOUR * back for back in range(5, -1, -1)]
    made = []
    for hour, end in enumerate(ends):
        made.append(
            _report(
                ACME,
                "plant-north",
                end,
                {"devices": 40 + hour, "mqtt_messages": 12_000 + 500 * hour, "storage_gb": 7.5},
            )
        )
        if hour < 2:
            made.append(
                _report(
                    ACME,
                    "plant-south",
                    end,
                    {"devices": 12, "mqtt_messages": 3_000, "storage_gb": 2},
                )
            )
        bluefin: dict[str, Any] = {"devices": 9, "mqtt_messages": 800 + 50 * hour, "storage_gb": 3}
        flags: dict[str, Any] = {}
        if hour == 2:
            bluefin.pop("storage_gb")
            flags = {"partial": True, "missing": ["storage_gb"]}
        if hour == 4:
            bluefin.pop("mqtt_messages")
            flags = {"unmeasured": ["mqtt_messages"]}
        if hour == 5:
            bluefin[DEAD_METER] = 420
        made.append(_report(BLUEFIN, "fleet-eu", end, bluefin, **flags))
        made.append(
            _report(
                DELTA, "substation-7", end, {"devices": 3, "mqtt_messages": 90, "storage_gb": 1.2}
            )
        )
    for days in (30, 1):
        made.append(
            _report(
                CORAL, "clinic-a", last - timedelta(days=days), {"devices": 5, "mqtt_messages": 60}
            )
        )
    return made


def _setup_stripe(client: stripe.StripeClient, settings: CollectorSettings) -> dict[str, str]:
    async def apply() -> dict[str, str]:
        connection = stripe_connection(settings)
        try:
            catalog = StripeCatalog(connection.client)
            setup = await StripeSetup(catalog, settings.catalogue()).apply()
        finally:
            await connection.aclose()
        return dict(setup.prices)

    result: list[dict[str, str]] = []
    # A loop of its own, in a thread: the browser tests' Playwright owns this thread's loop.
    thread = threading.Thread(target=lambda: result.append(asyncio.run(apply())))
    thread.start()
    thread.join()
    prices = result[0]
    client.v1.billing.meters.deactivate(_meter(client, DEAD_METER)["id"])
    return prices


def _subscribe(client: stripe.StripeClient, customer: str, prices: dict[str, str]) -> str:
    created = client.v1.customers.create(
        {"name": customer.replace("-", " ").title(), "metadata": {"customer_id": customer}}
    )
    client.v1.subscriptions.create(
        {
            "customer": created.id,
            "items": [{"price": prices[key]} for key in PRICE_KEYS],
            "metadata": {"customer_id": customer},
        }
    )
    return str(created.id)


def _post(scene: Scene, path: str, body: Any, headers: dict[str, str]) -> httpx.Response:
    response = httpx.post(f"{scene.url}{path}", json=body, headers=headers, timeout=30)
    assert response.status_code in (200, 201), response.text
    return response


def _forwarded(scene: Scene) -> bool:
    customers = scene.api("/api/customers")
    return all(c["pending"] == 0 for c in customers if c["linked"])


@contextmanager
def console_scene(tmp: Path, **overrides: Any) -> Iterator[Scene]:
    """The scenario above, served until the block ends."""
    with running_sandbox(SystemClock()) as sandbox:
        settings: dict[str, Any] = {
            "stripe_api_key": API_KEY,
            "stripe_api_base": sandbox.url,
            "stripe_mode": "meter_events",
            "stripe_max_rps": 1000,
            "forwarder_idle_sleep": 0.05,
            "reconcile_interval": 0,
            "reconcile_settle": 0,
            "console_refresh": 1,
            **overrides,
        }
        with run_collector(f"sqlite+aiosqlite:///{tmp / 'console.db'}", **settings) as collector:
            scene = Scene(collector, sandbox.url, sandbox.client)
            database = collector.database_url
            for role in ("viewer", "editor", "admin"):
                scene.keys[role] = issue_key(database, role, name=f"console {role}").secret
            scene.keys["scoped"] = issue_key(database, "viewer", ACME, name="acme viewer").secret
            scene.keys["scoped_editor"] = issue_key(database, "editor", ACME).secret
            prices = _setup_stripe(sandbox.client, collector.settings)
            admin = bearer(scene.keys["admin"])
            for customer in LINKED:
                stripe_id = _subscribe(sandbox.client, customer, prices)
                scene.stripe_customers[customer] = stripe_id
                _post(
                    scene,
                    f"/api/customers/{customer}/link",
                    {"stripe_customer_id": stripe_id},
                    admin,
                )
            tokens = {c: issue_token(database, c).secret for c in (*LINKED, CORAL)}
            for made in reports(datetime.now(UTC)):
                _post(
                    scene,
                    "/api/usage/report",
                    made.model_dump(mode="json"),
                    bearer(tokens[made.customer_id]),
                )
            wait_until(lambda: _forwarded(scene), "Stripe to acknowledge every linked forward")
            delta_meter = _meter(sandbox.client, "storage_gb")
            sandbox.client.v1.billing.meter_events.create(
                {
                    "event_name": delta_meter["event_name"],
                    "payload": {"stripe_customer_id": scene.stripe_customers[DELTA], "value": "1"},
                }
            )
            for customer in LINKED:
                scene.api(f"/api/usage/{customer}/reconcile")
            yield scene
