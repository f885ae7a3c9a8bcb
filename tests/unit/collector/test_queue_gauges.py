"""The background sampler: a failed read is logged and the next one still runs."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from collector.adapters.db.outbox import OutboxStore, QueueSnapshot, UnlinkedCustomer
from collector.services.queue_gauges import QueueGauges
from collector.telemetry import CollectorMetrics
from common.clock import ManualClock

NOW = datetime(2026, 6, 20, 12, tzinfo=UTC)
WAITING = QueueSnapshot(
    pending=3,
    batched=1,
    oldest_window_end=NOW - timedelta(minutes=10),
    unlinked_customers=1,
    waiting_customers=1,
    dead_batches=2,
    dead_customers=1,
)


class FlakyOutbox:
    """Fails its first read, answers the second and then asks the sampler to stop."""

    def __init__(self, stop: asyncio.Event) -> None:
        self.reads = 0
        self._stop = stop

    async def queue_snapshot(self) -> QueueSnapshot:
        self.reads += 1
        if self.reads == 1:
            raise ConnectionError("database went away")
        self._stop.set()
        return WAITING

    async def unlinked_customers(self, limit: int) -> list[UnlinkedCustomer]:
        return [UnlinkedCustomer("cust_x", 3, NOW - timedelta(minutes=10))]


async def test_a_failed_sample_is_logged_and_the_next_one_sets_the_gauges() -> None:
    stop = asyncio.Event()
    outbox = FlakyOutbox(stop)
    metrics = CollectorMetrics(CollectorRegistry())
    gauges = QueueGauges(cast(OutboxStore, outbox), metrics, ManualClock(NOW), every=0.0)

    with capture_logs() as logs:
        await asyncio.wait_for(gauges.run(stop), timeout=10)

    assert outbox.reads == 2
    events: list[dict[str, Any]] = [e for e in logs if e["event"] == "queue gauges not sampled"]
    assert [(e["log_level"], e["error"]) for e in events] == [("warning", "ConnectionError")]
    value = metrics.registry.get_sample_value
    assert value("usage_collector_pending_forwards", {"state": "pending"}) == 3
    assert value("usage_collector_pending_forwards", {"state": "batched"}) == 1
    assert value("usage_collector_oldest_unbilled_seconds") == 600
    assert value("usage_collector_dead_letters") == 2
    assert value("usage_collector_customers_unbilled", {"reason": "unlinked"}) == 1
    assert [e["customer_id"] for e in logs if e["event"] == "usage_waiting_unlinked"] == ["cust_x"]


class SteadyOutbox:
    """The same snapshot every read, with one customer's usage waiting for a link."""

    def __init__(self) -> None:
        self.unlinked_reads = 0

    async def queue_snapshot(self) -> QueueSnapshot:
        return WAITING

    async def unlinked_customers(self, limit: int) -> list[UnlinkedCustomer]:
        self.unlinked_reads += 1
        return [UnlinkedCustomer("cust_x", 3, NOW - timedelta(minutes=10))]


async def test_usage_waiting_unlinked_is_warned_by_the_leader_only() -> None:
    leader_outbox, follower_outbox = SteadyOutbox(), SteadyOutbox()
    leader_metrics = CollectorMetrics(CollectorRegistry())
    follower_metrics = CollectorMetrics(CollectorRegistry())
    clock = ManualClock(NOW)
    leader = QueueGauges(
        cast(OutboxStore, leader_outbox), leader_metrics, clock, leads=lambda: True
    )
    follower = QueueGauges(
        cast(OutboxStore, follower_outbox), follower_metrics, clock, leads=lambda: False
    )

    with capture_logs() as logs:
        await leader.sample()
        await follower.sample()

    assert [e["customer_id"] for e in logs if e["event"] == "usage_waiting_unlinked"] == ["cust_x"]
    assert (leader_outbox.unlinked_reads, follower_outbox.unlinked_reads) == (1, 0)
    for metrics in (leader_metrics, follower_metrics):
        value = metrics.registry.get_sample_value
        assert value("usage_collector_customers_unbilled", {"reason": "unlinked"}) == 1
        assert value("usage_collector_pending_forwards", {"state": "pending"}) == 3


async def test_a_replica_that_takes_the_lead_warns_of_what_still_waits() -> None:
    leading = False
    gauges = QueueGauges(
        cast(OutboxStore, SteadyOutbox()),
        CollectorMetrics(CollectorRegistry()),
        ManualClock(NOW),
        leads=lambda: leading,
    )

    with capture_logs() as logs:
        await gauges.sample()
        leading = True
        await gauges.sample()
        await gauges.sample()

    assert [e["customer_id"] for e in logs if e["event"] == "usage_waiting_unlinked"] == ["cust_x"]
