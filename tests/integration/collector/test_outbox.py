"""The outbox on real databases: forwards are written with their report and settled exactly once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from collector.adapters.db.migrate import upgrade_async
from collector.adapters.db.tables import BatchRow, ForwardRow
from collector.adapters.stripe.client import Delivered, OutgoingEvent
from collector.api.app import Services, build_services
from collector.errors import StripePermanent, StripeTransient
from collector.services.forwarder import Forwarder, ForwarderConfig
from collector.settings import CollectorSettings
from collector.telemetry import CollectorMetrics
from common.clock import ManualClock
from common.schema import UsageReport
from tests.support.collector import count_rows_async

NOW = datetime(2026, 6, 20, 12, 0, tzinfo=UTC)


class StripeLike:
    """Keeps events by identifier the way Stripe does; scripted failures come first."""

    mode = "meter_events"
    max_events = 1

    def __init__(self) -> None:
        self.events: dict[str, OutgoingEvent] = {}
        self.calls = 0
        self.script: list[str] = []

    async def send(self, events: Sequence[OutgoingEvent]) -> list[Delivered | Exception]:
        results: list[Delivered | Exception] = []
        for event in events:
            self.calls += 1
            action = self.script.pop(0) if self.script else "ok"
            if action == "500":
                results.append(StripeTransient("Stripe 500", status=500))
                continue
            if action == "reject":
                results.append(StripePermanent("Stripe 400: no such meter", status=400))
                continue
            duplicate = event.identifier in self.events
            self.events.setdefault(event.identifier, event)
            if action == "lost-answer":
                results.append(StripeTransient("connection dropped after Stripe stored it"))
            else:
                results.append(Delivered(400 if duplicate else 200, duplicate=duplicate))
        return results

    def billed(self, metric: str) -> list[int]:
        return [e.quantity for e in self.events.values() if e.metric == metric]


def report(hour: int, **metrics: float) -> UsageReport:
    end = NOW.replace(hour=0) + timedelta(hours=hour)
    return UsageReport(
        customer_id="cust_1",
        instance_id="i",
        window_start=end - timedelta(hours=1),
        window_end=end,
        metrics=metrics,
    )


@pytest.fixture
async def setup(
    database_url: str,
) -> AsyncIterator[tuple[Services, Forwarder, StripeLike, ManualClock, str]]:
    settings = CollectorSettings(database_url=database_url, stripe_mode="off")
    await upgrade_async(settings.async_database_url())
    clock = ManualClock(NOW)
    services = build_services(settings, clock=clock, registry=CollectorRegistry())
    stripe = StripeLike()
    config = ForwarderConfig(mode="meter_events", max_rps=1000, backoff_base=1, backoff_cap=10)
    forwarder = Forwarder(
        services.outbox,
        services.links,
        stripe,
        settings.catalogue(),
        clock,
        CollectorMetrics(CollectorRegistry()),
        config,
    )
    yield services, forwarder, stripe, clock, database_url
    await services.close()


async def ingest(services: Services, *reports: UsageReport) -> None:
    for item in reports:
        await services.ingest.store(item)


async def settle(forwarder: Forwarder, clock: ManualClock, rounds: int = 20) -> None:
    for _ in range(rounds):
        await forwarder.drain()
        clock.advance(timedelta(minutes=10))


async def test_forwards_are_written_with_the_report_and_only_once(setup) -> None:
    services, _, _, _, url = setup
    first = report(1, mqtt_messages=10, devices=3)
    await ingest(services, first, first)
    assert await count_rows_async(url, ForwardRow) == 2


async def test_counter_deltas_reach_stripe_once_through_lost_answers_and_500s(setup) -> None:
    services, forwarder, stripe, clock, _ = setup
    await services.links.link("cust_1", "cus_A", NOW, subscription_status="none")
    stripe.script = ["500", "lost-answer", "500"]
    await ingest(services, *(report(h, mqtt_messages=100 * h) for h in range(1, 6)))
    await settle(forwarder, clock)
    await ingest(services, report(6, mqtt_messages=7))
    await settle(forwarder, clock)
    assert sum(stripe.billed("mqtt_messages")) == sum(100 * h for h in range(1, 6)) + 7
    status = await services.forwarding.status()
    assert status.forwards == {"sent": 6}
    assert "dead" not in status.batches


async def test_usage_waits_for_a_customer_link(setup) -> None:
    services, forwarder, stripe, clock, _ = setup
    await ingest(services, report(1, mqtt_messages=5))
    await settle(forwarder, clock, rounds=3)
    assert stripe.calls == 0
    assert await services.outbox.batches() == []
    assert (await services.forwarding.status()).forwards == {"pending": 1}
    await services.links.link("cust_1", "cus_A", clock.now(), subscription_status="none")
    await settle(forwarder, clock, rounds=20)
    assert stripe.billed("mqtt_messages") == [5]


async def test_rejected_batch_is_dead_lettered_and_retried_unchanged(setup) -> None:
    services, forwarder, stripe, clock, _ = setup
    await services.links.link("cust_1", "cus_A", NOW, subscription_status="none")
    stripe.script = ["reject"]
    await ingest(services, report(1, mqtt_messages=5), report(2, mqtt_messages=6))
    await settle(forwarder, clock, rounds=2)
    dead: list[BatchRow] = await services.outbox.batches("dead")
    assert len(dead) == 1
    assert dead[0].last_error == "Stripe 400: no such meter"
    identifier = dead[0].identifier
    await ingest(services, report(3, mqtt_messages=7))
    retried = await services.forwarding.retry(dead[0].id)
    assert retried.identifier == identifier
    await settle(forwarder, clock)
    assert sorted(stripe.billed("mqtt_messages")) == [7, 11]


async def test_unchanged_gauges_cost_no_calls_and_peak_storage_wins(setup) -> None:
    services, forwarder, stripe, clock, _ = setup
    await services.links.link("cust_1", "cus_A", NOW, subscription_status="none")
    for hour, storage in zip(range(1, 9), [1.2, 2.5, 2.1, 2.2, 2.4, 1.0, 0.5, 2.6], strict=True):
        await ingest(services, report(hour, devices=8, storage_gb=storage))
        await settle(forwarder, clock, rounds=1)
    assert stripe.billed("devices") == [8]
    storage_events = sorted(
        (e.timestamp, e.quantity) for e in stripe.events.values() if e.metric == "storage_gb"
    )
    assert storage_events[-1][1] == 3
    assert [q for _, q in storage_events] == [2, 3]
