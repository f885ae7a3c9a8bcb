"""The background reconciler against the Stripe sandbox, on the harness's manual clock (issue 13).

Operators used to find drift one customer at a time with curl: during one run Stripe under-billed
a customer's storage and only that customer's `/reconcile` showed it. The reconciler checks every
linked customer each interval, spread over it and under a read rate, and flags drift once the
settle delay has passed.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from collector.services.principals import Role
from collector.services.reconciler import Reconciler
from common.clock import ManualClock
from common.schema import UsageReport
from tests.support.forwarding import Harness, api_client, harness, hourly_report, new_customer
from tests.support.stripe_sandbox import Sandbox

HOUR = timedelta(hours=1)
SETTLE = timedelta(hours=1)
METER_READS = ("/v1/billing/meters",)


@pytest.fixture
async def h(
    stripe_sandbox: Sandbox, sandbox_clock: ManualClock, tmp_path: Path
) -> AsyncIterator[Harness]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'c.db'}"
    async with harness(
        stripe_sandbox.url,
        sandbox_clock,
        url,
        "meter_events",
        reconcile_interval=600,
        reconcile_settle=SETTLE.total_seconds(),
        reconcile_max_rps=1000,
    ) as running:
        yield running


def loop_of(h: Harness) -> Reconciler:
    assert h.services.reconcile_loop is not None
    return h.services.reconcile_loop


def gauge(h: Harness, name: str, **labels: str) -> float | None:
    return h.services.telemetry.registry.get_sample_value(name, labels)


def usage(customer_id: str, start: Any, hour: int, **metrics: float) -> UsageReport:
    return hourly_report(
        customer_id,
        start,
        hour,
        **(metrics or {"devices": 4, "mqtt_messages": 100, "storage_gb": 2}),
    )


async def billed_customers(h: Harness, count: int) -> dict[str, str]:
    """``count`` subscribed customers with one hour of usage each, delivered to Stripe."""
    start = h.clock.now()
    customers = {}
    for _ in range(count):
        customer = new_customer()
        customers[customer] = await h.subscribe(customer)
    for customer in customers:
        await h.report(usage(customer, start, 1))
    await h.settle()
    return customers


async def send_behind_the_collectors_back(
    h: Harness, stripe_customer_id: str, event_name: str, value: int
) -> None:
    """A meter event sent to Stripe by someone else, a minute after everything so far."""
    h.clock.advance(timedelta(minutes=1))
    await h.client.v1.billing.meter_events.create_async(
        {
            "event_name": event_name,
            "payload": {"stripe_customer_id": stripe_customer_id, "value": str(value)},
            "timestamp": int(h.clock.now().timestamp()),
        }
    )


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


async def test_stripe_under_billing_storage_is_flagged_after_the_settle_delay_and_cleared(
    h: Harness,
) -> None:
    customers = await billed_customers(h, 2)
    drifter, steady = sorted(customers)
    loop = loop_of(h)

    first = await loop.round()
    assert [(c.customer_id, c.state) for c in first] == [(drifter, "in_sync"), (steady, "in_sync")]
    assert gauge(h, "usage_collector_customers_in_sync") == 2
    assert gauge(h, "usage_collector_customers_drifting") == 0

    await send_behind_the_collectors_back(h, customers[drifter], "storage_gb", 1)
    with capture_logs() as logs:
        settling = await loop.round()  # the last delivery is younger than the settle delay
        h.clock.advance(SETTLE)
        drifting = await loop.round()
        again = await loop.round()
    assert settling[0].state == "settling"
    assert drifting[0].state == again[0].state == "drifting"
    assert [c.state for c in (settling[1], drifting[1], again[1])] == ["in_sync"] * 3
    started = events(logs, "customer_drift_started")
    assert len(started) == 1
    assert started[0]["customer_id"] == drifter
    assert started[0]["log_level"] == "warning"
    assert started[0]["metrics"] == {
        "storage_gb": {"collector": 2, "stripe": "1", "difference": "-1"}
    }
    assert events(logs, "customer_drift_stopped") == []
    assert gauge(h, "usage_collector_customers_drifting") == 1
    assert gauge(h, "usage_collector_customers_in_sync") == 1
    assert gauge(h, "usage_collector_reconcile_max_drift", metric="storage_gb") == 1
    assert gauge(h, "usage_collector_reconcile_max_drift", metric="mqtt_messages") == 0

    async with api_client(h, "viewer") as api:
        listed = (await api.get("/api/reconciliation", params={"state": "drifting"})).json()
        everyone = (await api.get("/api/reconciliation")).json()
        out_of_sync = (await api.get("/api/customers", params={"out_of_sync": "true"})).json()
    assert [r["customer_id"] for r in listed] == [drifter]
    assert listed[0]["state"] == "drifting"
    assert listed[0]["stripe_customer_id"] == customers[drifter]
    assert listed[0]["checked_at"] == again[0].at.isoformat().replace("+00:00", "Z")
    by_metric = {m["metric"]: m for m in listed[0]["metrics"]}
    assert by_metric["storage_gb"] == {
        "metric": "storage_gb",
        "collector": "2",
        "stripe": "1",
        "difference": "-1",
        "state": "drifting",
    }
    assert by_metric["mqtt_messages"]["state"] == "in_sync"
    assert {r["customer_id"]: r["state"] for r in everyone} == {
        drifter: "drifting",
        steady: "in_sync",
    }
    assert [c["customer_id"] for c in out_of_sync] == [drifter]

    await send_behind_the_collectors_back(h, customers[drifter], "storage_gb", 2)
    with capture_logs() as logs:
        fixed = await loop.round()
    assert fixed[0].state == "in_sync"
    stopped = events(logs, "customer_drift_stopped")
    assert [(e["customer_id"], e["state"], e["log_level"]) for e in stopped] == [
        (drifter, "in_sync", "info")
    ]
    assert events(logs, "customer_drift_started") == []
    assert gauge(h, "usage_collector_customers_drifting") == 0
    assert gauge(h, "usage_collector_customers_in_sync") == 2
    assert gauge(h, "usage_collector_reconcile_max_drift", metric="storage_gb") == 0
    assert gauge(h, "usage_collector_reconcile_checks_total", result="ok") == 10  # 5 rounds of 2


async def test_a_forward_still_waiting_is_settling_not_drifting(
    h: Harness, stripe_sandbox: Sandbox
) -> None:
    customers = await billed_customers(h, 1)
    (customer,) = customers
    start = h.clock.now() - 2 * HOUR
    stripe_sandbox.control.faults(error_500_rate=1.0, path_prefixes=["/v1/billing/meter_events"])
    try:
        await h.report(usage(customer, start, 3, mqtt_messages=50))
        await h.forwarder.drain()  # the batch fails: it waits, counted by the collector
        h.clock.advance(2 * SETTLE)
        with capture_logs() as logs:
            (waiting,) = await loop_of(h).round()
    finally:
        stripe_sandbox.control.clear_faults()

    assert waiting.state == "settling"
    assert events(logs, "customer_drift_started") == []
    assert gauge(h, "usage_collector_customers_drifting") == 0
    async with api_client(h, "viewer") as api:
        (listed,) = (await api.get("/api/reconciliation")).json()
        viewed = (await api.get(f"/api/customers/{customer}")).json()
    mqtt = next(m for m in listed["metrics"] if m["metric"] == "mqtt_messages")
    assert (listed["state"], listed["pending_forwards"]) == ("settling", 1)
    assert (mqtt["collector"], mqtt["stripe"], mqtt["state"]) == ("150", "100", "settling")
    assert viewed["reconcile"] == "settling"

    await h.settle()
    (delivered,) = await loop_of(h).round()
    assert delivered.state == "in_sync"


async def test_a_round_spreads_its_customers_over_the_interval(h: Harness) -> None:
    customers = sorted(await billed_customers(h, 4))
    loop = loop_of(h)

    checks = await loop.round()
    offsets = [(c.at - checks[0].at).total_seconds() for c in checks]
    assert [c.customer_id for c in checks] == customers
    assert offsets == [0, 150, 300, 450]  # customer k of 4 at k * 600 s / 4

    late = new_customer()
    await h.subscribe(late)  # each round reads the linked customers again
    checks = await loop.round()
    assert sorted(c.customer_id for c in checks) == sorted([*customers, late])
    assert [(c.at - checks[0].at).total_seconds() for c in checks] == [0, 120, 240, 360, 480]

    began = h.clock.now()
    await loop.run(asyncio.Event(), rounds=2)
    results = await h.services.reconciliation.latest()
    checked = sorted(r.record.checked_at for r in results)
    # The second round starts one interval after the first one started.
    assert [(t - began).total_seconds() for t in checked] == [600, 720, 840, 960, 1080]


async def test_reads_never_exceed_the_reconcile_rate_however_many_customers(
    stripe_sandbox: Sandbox, sandbox_clock: ManualClock, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'c.db'}"
    async with harness(
        stripe_sandbox.url,
        sandbox_clock,
        url,
        "meter_events",
        reconcile_interval=1,
        reconcile_max_rps=5,
    ) as h:
        count = 6
        await billed_customers(h, count)
        before = len(stripe_sandbox.control.calls())
        began = h.clock.now()
        checks = await loop_of(h).round()
        took = (h.clock.now() - began).total_seconds()
        calls = stripe_sandbox.control.calls()[before:]

    reads = [c for c in calls if c["method"] == "GET" and c["path"].startswith(METER_READS)]
    assert [c.state for c in checks] == ["in_sync"] * count
    # The meter list once (it is cached), then one summary per metric and customer.
    assert len(reads) == 1 + count * 4
    per_second = Counter(c["time"] for c in reads)  # the sandbox's clock: the manual clock
    assert max(per_second.values()) <= 5
    assert took >= len(reads) / 5 - 1  # the limiter stretched a round meant to take 1 s


async def test_usage_records_mode_reads_usage_record_summaries(
    stripe_sandbox: Sandbox, sandbox_clock: ManualClock, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'c.db'}"
    async with harness(stripe_sandbox.url, sandbox_clock, url, "usage_records") as h:
        (customer,) = await billed_customers(h, 1)
        before = len(stripe_sandbox.control.calls())
        (check,) = await loop_of(h).round()
        calls = stripe_sandbox.control.calls()[before:]

    assert check.customer_id == customer
    assert check.state == "in_sync"
    paths = [c["path"] for c in calls if c["method"] == "GET"]
    assert len(paths) == 3  # one per subscribed price; api_requests has no item
    assert all(p.endswith("/usage_record_summaries") for p in paths)
    assert not any("event_summaries" in p or p.startswith("/v1/billing/meters") for p in paths)


async def test_a_failure_for_one_customer_does_not_stop_the_others(h: Harness) -> None:
    customers = await billed_customers(h, 3)
    broken = sorted(customers)[1]
    await h.client.v1.customers.delete_async(customers[broken])  # its reads now fail

    with capture_logs() as logs:
        checks = await loop_of(h).round()

    assert [(c.customer_id, c.state) for c in checks] == [
        (c, None if c == broken else "in_sync") for c in sorted(customers)
    ]
    failed = events(logs, "reconcile_failed")
    assert [e["customer_id"] for e in failed] == [broken]
    assert gauge(h, "usage_collector_reconcile_checks_total", result="failed") == 1
    assert gauge(h, "usage_collector_reconcile_checks_total", result="ok") == 2
    assert gauge(h, "usage_collector_reconcile_rounds_total") == 1


async def test_a_customer_scoped_key_sees_only_its_customer(h: Harness) -> None:
    customers = sorted(await billed_customers(h, 2))
    await loop_of(h).round()
    issued = await h.services.credentials.create_key(
        Role.VIEWER, "scoped", customer_id=customers[0]
    )
    async with api_client(h, "viewer") as api:
        headers = {"authorization": f"Bearer {issued.secret}"}
        everyone = await api.get("/api/reconciliation", headers=headers)
        own = await api.get(
            "/api/reconciliation", params={"customer_id": customers[0]}, headers=headers
        )
        other = await api.get(
            "/api/reconciliation", params={"customer_id": customers[1]}, headers=headers
        )
        bad = await api.get("/api/reconciliation", params={"state": "lost"})
    assert everyone.status_code == 403
    assert [r["customer_id"] for r in own.json()] == [customers[0]]
    assert other.status_code == 403
    assert (bad.status_code, bad.json()["field"]) == (400, "state")


@pytest.mark.parametrize("interval", ["0", "off"])
async def test_an_interval_of_zero_or_off_runs_no_reconciler(
    stripe_sandbox: Sandbox, sandbox_clock: ManualClock, tmp_path: Path, interval: str
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'c.db'}"
    async with harness(
        stripe_sandbox.url, sandbox_clock, url, "meter_events", reconcile_interval=interval
    ) as h:
        assert h.services.reconcile_loop is None


@pytest.mark.postgres
async def test_two_replicas_together_stay_under_the_reconcile_rate(
    stripe_sandbox: Sandbox, sandbox_clock: ManualClock, postgres_url: str
) -> None:
    settings = {"reconcile_interval": 1, "reconcile_max_rps": 5}
    async with (
        harness(stripe_sandbox.url, sandbox_clock, postgres_url, "meter_events", **settings) as h,
        harness(stripe_sandbox.url, sandbox_clock, postgres_url, "meter_events", **settings) as o,
    ):
        count = 4
        await billed_customers(h, count)
        before = len(stripe_sandbox.control.calls())
        mine, theirs = await asyncio.gather(loop_of(h).round(), loop_of(o).round())
        calls = stripe_sandbox.control.calls()[before:]

    reads = [c for c in calls if c["method"] == "GET" and c["path"].startswith(METER_READS)]
    assert [c.state for c in [*mine, *theirs]] == ["in_sync"] * 2 * count
    assert len(reads) == 2 * (1 + count * 4)
    assert max(Counter(c["time"] for c in reads).values()) <= 5
