"""A stuck queue moves the queue gauges, the status says why usage waits, the log says what
the collector did (issue 12, points 1, 5 and 6).

Each scenario holds the queue one way: a customer not linked to Stripe, Stripe answering 500,
Stripe refusing a batch for good. Time moves on the shared manual clock only.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from common.clock import ManualClock
from tests.support.forwarding import Harness, api_client, harness, hourly_report, new_customer
from tests.support.stripe_sandbox import Sandbox

MODE = "meter_events"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The gauges' grouped queries run on SQLite and on a real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'gauges.db'}"
    return str(request.getfixturevalue("postgres_url"))


def gauges(h: Harness) -> dict[str, float]:
    """Every queue gauge as ``/metrics`` exports it."""
    registry = h.services.telemetry.registry

    def value(name: str, **labels: str) -> float:
        found = registry.get_sample_value(name, labels)
        assert found is not None, f"{name}{labels} is not exported"
        return found

    return {
        "pending": value("usage_collector_pending_forwards", state="pending"),
        "batched": value("usage_collector_pending_forwards", state="batched"),
        "oldest_unbilled": value("usage_collector_oldest_unbilled_seconds"),
        "dead_letters": value("usage_collector_dead_letters"),
        "unlinked": value("usage_collector_customers_unbilled", reason="unlinked"),
        "waiting": value("usage_collector_customers_unbilled", reason="waiting"),
        "dead": value("usage_collector_customers_unbilled", reason="dead"),
    }


IDLE = dict.fromkeys(
    ("pending", "batched", "oldest_unbilled", "dead_letters", "unlinked", "waiting", "dead"), 0.0
)


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


async def test_unlinked_customers_usage_waits_visibly_in_gauges_status_and_log(
    stripe_sandbox: Sandbox, sandbox_clock: ManualClock, database_url: str
) -> None:
    async with harness(stripe_sandbox.url, sandbox_clock, database_url, MODE) as h:
        customer = new_customer()
        start = h.clock.now()
        with capture_logs() as logs:
            for hour in (1, 2):
                await h.report(
                    hourly_report(customer, start, hour, mqtt_messages=10 * hour, devices=3)
                )
            await h.forwarder.drain()
            await h.services.queue_gauges.sample()

        # Two windows of two metrics wait; the oldest ended an hour and a minute ago.
        assert gauges(h) == IDLE | {"pending": 4, "oldest_unbilled": 3660, "unlinked": 1}
        stored = events(logs, "report_stored")
        assert [(e["customer_id"], e["result"], e["log_level"]) for e in stored] == [
            (customer, "created", "info")
        ] * 2
        assert stored[0]["window_end"] == (start + timedelta(hours=1)).isoformat()
        assert sorted(stored[0]["metrics"]) == ["devices", "mqtt_messages"]
        [warning] = events(logs, "usage_waiting_unlinked")
        assert warning["log_level"] == "warning"
        assert (warning["customer_id"], warning["forwards"]) == (customer, 4)
        assert f"customers link {customer}" in warning["fix"]

        h.clock.advance(timedelta(minutes=30))
        with capture_logs() as later:
            await h.services.queue_gauges.sample()
        assert gauges(h)["oldest_unbilled"] == 3660 + 1800
        assert events(later, "usage_waiting_unlinked") == [], "warned once, not every sample"

        status = await h.services.forwarding.status()
        assert status.customers_unbilled == {"unlinked": 1, "waiting": 0, "dead": 0}
        assert [
            (u.customer_id, u.forwards, u.waiting_seconds) for u in status.unlinked_customers
        ] == [(customer, 4, 3660 + 1800)]
        async with api_client(h, "viewer") as api:
            body = (await api.get("/api/forwarding/status")).json()
        assert body["customers_unbilled"]["unlinked"] == 1
        assert body["unlinked_customers"][0]["customer_id"] == customer

        h.clock.advance(timedelta(hours=1))
        with capture_logs() as an_hour_later:
            await h.services.queue_gauges.sample()
        assert len(events(an_hour_later, "usage_waiting_unlinked")) == 1, "reminded hourly"

        stripe_customer = await h.subscribe(customer)
        with capture_logs() as delivered:
            await h.settle()
            await h.services.queue_gauges.sample()
        assert gauges(h) == IDLE
        status = await h.services.forwarding.status()
        assert status.unlinked_customers == []
        sent = {e["metric"]: e for e in events(delivered, "batch_sent")}
        assert set(sent) == {"devices", "mqtt_messages"}
        mqtt = sent["mqtt_messages"]
        assert (mqtt["customer_id"], mqtt["stripe_customer_id"]) == (customer, stripe_customer)
        assert (mqtt["quantity"], mqtt["attempts"], mqtt["duplicate"]) == (30, 1, False)
        [batch] = [b for b in await h.services.outbox.batches("sent") if b.id == mqtt["batch"]]
        assert mqtt["identifier"] == batch.identifier


async def test_stripe_failing_holds_the_gauges_up_and_lag_stays_a_delivery_histogram(
    stripe_sandbox: Sandbox, sandbox_clock: ManualClock, database_url: str
) -> None:
    async with harness(stripe_sandbox.url, sandbox_clock, database_url, MODE) as h:
        customer = new_customer()
        await h.subscribe(customer)
        start = h.clock.now()
        stripe_sandbox.control.faults(error_500_rate=1.0)
        await h.report(hourly_report(customer, start, 1, mqtt_messages=5))
        await h.forwarder.drain()
        await h.services.queue_gauges.sample()
        assert gauges(h) == IDLE | {"batched": 1, "oldest_unbilled": 60, "waiting": 1}

        for _ in range(3):
            h.clock.advance(timedelta(minutes=10))
            await h.forwarder.drain()
        await h.services.queue_gauges.sample()
        assert gauges(h) == IDLE | {"batched": 1, "oldest_unbilled": 1860, "waiting": 1}
        lag = "usage_collector_forward_lag_seconds_count"
        assert h.services.telemetry.registry.get_sample_value(lag) == 0

        stripe_sandbox.control.clear_faults()
        await h.settle()
        await h.services.queue_gauges.sample()
        assert gauges(h) == IDLE
        assert h.services.telemetry.registry.get_sample_value(lag) == 1


async def test_a_batch_stripe_refuses_is_an_open_dead_letter_in_gauges_and_log(
    stripe_sandbox: Sandbox, sandbox_clock: ManualClock, database_url: str
) -> None:
    async with harness(stripe_sandbox.url, sandbox_clock, database_url, MODE) as h:
        customer = new_customer()
        # Linked to a Stripe customer the account does not have: Stripe answers 400.
        await h.services.links.link(
            customer, "cus_NotInTheAccount", h.clock.now(), subscription_status="none"
        )
        start = h.clock.now()
        with capture_logs() as logs:
            await h.report(hourly_report(customer, start, 1, mqtt_messages=5))
            await h.forwarder.drain()
            await h.services.queue_gauges.sample()

        assert gauges(h) == IDLE | {"dead_letters": 1, "dead": 1}
        [dead] = await h.services.outbox.batches("dead")
        [entry] = events(logs, "batch_dead")
        assert entry["log_level"] == "warning"
        assert (entry["customer_id"], entry["metric"], entry["reason"]) == (
            customer,
            "mqtt_messages",
            "rejected",
        )
        assert (entry["identifier"], entry["status"]) == (dead.identifier, 400)
        assert "No such customer" in entry["error"]
        status = await h.services.forwarding.status()
        assert status.customers_unbilled == {"unlinked": 0, "waiting": 0, "dead": 1}
