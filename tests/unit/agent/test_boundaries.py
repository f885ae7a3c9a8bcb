"""Billing-period boundaries: windows are cut at them, exactly, and the agent never forgets them."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

import agent
from agent.adapters.boundary_state import SqliteBoundaryStore
from agent.adapters.device_api import DeviceCounts
from agent.adapters.kube import LeaseRecord
from agent.adapters.prometheus import CounterWindow, GaugeSamples
from agent.adapters.series import SeriesKey, series_key
from agent.adapters.spool import Spool
from agent.adapters.state_db import BILLING_BOUNDARIES, StateDb
from agent.errors import KubeConflict
from agent.services.boundaries import MAX_KNOWN, RETENTION, KnownBoundaries, split_window
from agent.services.catchup import Schedule
from agent.services.collect import ReportCollector
from agent.services.counters import series_increase
from agent.services.leader import BOUNDARIES_ANNOTATION, LeaderElector
from agent.services.providers import DeviceCount, PrometheusCounter, PrometheusPeak
from agent.services.telemetry import AgentMetrics, Health
from common.billing_periods import PeriodBounds
from common.clock import ManualClock
from common.schema import derive_report_id
from common.windows import EPOCH, Window
from tests.unit.agent.agent_kit import (
    FakeCollector,
    TruthSource,
    make_agent,
    messages_in,
    stop_at,
)

HOUR = timedelta(hours=1)
OFFSET = timedelta(seconds=30)
BOUNDARY = datetime(2024, 3, 19, 12, 34, 56, tzinfo=UTC)
PERIODS = (
    PeriodBounds(start=datetime(2024, 2, 19, 12, 34, 56, tzinfo=UTC), end=BOUNDARY),
    PeriodBounds(start=BOUNDARY, end=datetime(2024, 4, 19, 12, 34, 56, tzinfo=UTC)),
)


def at(clock: str) -> datetime:
    """A moment on 2024-03-19, e.g. ``at("12:34:56")``."""
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return datetime(2024, 3, 19, hours, minutes, seconds, tzinfo=UTC)


class PrometheusLike:
    """Raw samples served the way Prometheus does: ``(start, end]``, baseline at or before start."""

    def __init__(
        self,
        counters: dict[SeriesKey, list[tuple[datetime, int]]],
        storage: list[tuple[datetime, int]],
    ) -> None:
        self.counters = counters
        self.storage = storage

    async def counter_window(self, selector: str, window: Window) -> CounterWindow:
        result = CounterWindow()
        for key, samples in self.counters.items():
            before = [Decimal(v) for t, v in samples if t <= window.start]
            inside = [Decimal(v) for t, v in samples if window.start < t <= window.end]
            if before:
                result.baselines[key] = before[-1]
            if inside:
                result.samples[key] = inside
        return result

    async def gauge_samples(
        self, selector: str, window: Window, lookback: timedelta
    ) -> GaugeSamples:
        def millis(moment: datetime) -> int:
            return (moment - EPOCH) // timedelta(milliseconds=1)

        after = window.start - lookback
        samples = [(millis(t), Decimal(v)) for t, v in self.storage if after < t <= window.end]
        return GaugeSamples(
            millis(window.start), millis(window.end), 15_000, {(("pvc", "data"),): samples}
        )


class Devices:
    def __init__(self, active: int) -> None:
        self.active = active

    async def count(self) -> DeviceCounts:
        return DeviceCounts(total=self.active + 2, active=self.active)


BROKER_A = series_key({"broker": "a"})
BROKER_B = series_key({"broker": "b"})
# A real counter sequence around the boundary at 12:34:56, with a reset and a new series.
COUNTERS = {
    BROKER_A: [
        (at("11:00:00"), 4000),
        (at("11:59:45"), 5000),  # +1000 in 11:00-12:00
        (at("12:10:00"), 5400),  # +400
        (at("12:34:50"), 5900),  # +500
        (at("12:34:56"), 6000),  # +100, exactly at the boundary: the old period's
        (at("12:35:00"), 6050),  # +50, the new period's
        (at("12:50:00"), 120),  # reset: +120
        (at("13:00:00"), 300),  # +180
    ],
    BROKER_B: [
        (at("12:40:00"), 70),  # a new series counts from 0: +70
        (at("12:55:00"), 100),  # +30
    ],
}
STORAGE_BYTES = [
    (at("11:30:00"), 10 * 10**9),
    (at("12:05:00"), 30 * 10**9),
    (at("12:30:00"), 50 * 10**9),  # the old period's peak
    (at("12:34:56"), 45 * 10**9),  # in use when the new period starts: its peak too
    (at("12:40:00"), 20 * 10**9),
    (at("12:59:00"), 25 * 10**9),
]


def prometheus_collector(source: PrometheusLike, devices: Devices) -> ReportCollector:
    return ReportCollector(
        customer_id="c",
        instance_id="i",
        providers=[
            PrometheusCounter("mqtt_messages", source, "mqtt_messages_received_total"),
            PrometheusPeak("storage_gb", source, "sum(kubelet_volume_stats_used_bytes)"),
            DeviceCount(devices),
        ],
        agent_version=agent.__version__,
    )


async def test_window_straddling_a_boundary_is_cut_into_two_reports(tmp_path):
    clock = ManualClock(at("12:00:31"))
    source = PrometheusLike(COUNTERS, STORAGE_BYTES)
    devices = Devices(active=4)
    reports = prometheus_collector(source, devices)
    collector = FakeCollector(clock, periods=PERIODS)
    agent = make_agent(tmp_path, clock, reports, collector, interval=HOUR, query_offset=OFFSET)
    # 11:00-12:00 is reported; the collector's answer names the billing periods.
    await agent.loop.run_once(attempts=1)
    assert agent.boundaries.moments() == [PERIODS[0].start, BOUNDARY, PERIODS[1].end]

    devices.active = 6
    clock.set(at("13:00:31"))
    await agent.loop.run_once(attempts=1)

    stored = sorted(collector.stored.values(), key=lambda r: r.window_start)
    assert [(r.window_start, r.window_end) for r in stored] == [
        (at("11:00:00"), at("12:00:00")),
        (at("12:00:00"), BOUNDARY),
        (BOUNDARY, at("13:00:00")),
    ]
    old, new = stored[1], stored[2]
    assert old.metrics == {"mqtt_messages": 1000, "storage_gb": 50.0, "devices": 6}
    assert new.metrics == {"mqtt_messages": 450, "storage_gb": 45.0, "devices": 6}
    assert old.id == derive_report_id("c", "i", at("12:00:00"), BOUNDARY)
    assert new.id == derive_report_id("c", "i", BOUNDARY, at("13:00:00"))
    # The pieces partition the whole window's increase exactly: no message lost or counted twice.
    whole = await reports.collect(Window(at("12:00:00"), at("13:00:00")))
    assert whole.report.metrics["mqtt_messages"] == 1450 == 1000 + 450


@given(
    baseline=st.none() | st.integers(0, 10**6),
    steps=st.lists(st.tuples(st.integers(0, 500), st.booleans()), min_size=1, max_size=40),
    data=st.data(),
)
def test_a_cut_anywhere_splits_a_counter_increase_exactly(baseline, steps, data):
    """Piece one ends at the boundary's sample, piece two starts from it as its baseline."""
    values: list[Decimal] = []
    current = baseline or 0
    for messages, reset in steps:
        current = messages if reset else current + messages
        values.append(Decimal(current))
    first = None if baseline is None else Decimal(baseline)
    k = data.draw(st.integers(0, len(values)), label="samples at or before the boundary")

    before = series_increase(first, values[:k])
    after = series_increase(values[k - 1] if k else first, values[k:])

    assert before + after == series_increase(first, values)


def test_a_window_is_cut_at_every_boundary_strictly_inside_it():
    window = Window(at("12:00:00"), at("13:00:00"))
    cuts = [at("11:00:00"), at("12:00:00"), at("12:10:00"), BOUNDARY, at("13:00:00")]

    pieces = split_window(window, cuts)

    assert pieces == [
        Window(at("12:00:00"), at("12:10:00")),
        Window(at("12:10:00"), BOUNDARY),
        Window(BOUNDARY, at("13:00:00")),
    ]
    assert split_window(window, [at("12:00:00"), at("13:00:00")]) == [window]


def test_a_piece_ending_at_a_boundary_is_due_at_the_boundary_and_the_rest_at_the_window_end():
    schedule = Schedule(interval=HOUR, query_offset=OFFSET)

    assert schedule.plan(at("12:00:00"), at("12:35:20"), [BOUNDARY]) == []
    assert schedule.plan(at("12:00:00"), at("12:35:26"), [BOUNDARY]) == [
        Window(at("12:00:00"), BOUNDARY)
    ]
    assert schedule.plan(BOUNDARY, at("12:59:59"), [BOUNDARY]) == []
    assert schedule.plan(BOUNDARY, at("13:00:30"), [BOUNDARY]) == [Window(BOUNDARY, at("13:00:00"))]
    assert schedule.next_end(at("12:10:00"), [BOUNDARY]) == BOUNDARY
    assert schedule.next_end(at("12:35:26"), [BOUNDARY]) == at("13:00:00")


async def test_the_loop_collects_the_piece_before_a_boundary_once_the_boundary_is_due(tmp_path):
    start = datetime(2024, 3, 19, 11, 50, 3, tzinfo=UTC)
    interval = timedelta(minutes=15)
    clock = ManualClock(start)
    source = TruthSource(clock)
    collector = FakeCollector(clock, periods=PERIODS)
    agent = make_agent(tmp_path, clock, source, collector, interval=interval, query_offset=OFFSET)
    stop_at(agent, clock, at("13:20:00"))

    await agent.loop.run()

    collected = dict(source.collected)
    piece = Window(at("12:30:00"), BOUNDARY)
    assert BOUNDARY + OFFSET <= collected[piece] < at("12:45:00")
    assert collected[Window(BOUNDARY, at("12:45:00"))] >= at("12:45:00") + OFFSET
    windows = collector.windows()
    assert [s for s, _ in windows[1:]] == [e for _, e in windows[:-1]]  # no gap, no overlap
    assert not [w for w in windows if w[0] < BOUNDARY < w[1]]
    assert collector.billed("mqtt_messages") == sum(messages_in(Window(*w)) for w in windows)


async def test_an_outage_across_a_boundary_bills_each_period_exactly(tmp_path):
    start = datetime(2024, 3, 19, 10, 17, 3, tzinfo=UTC)
    clock = ManualClock(start)
    back_at = at("16:07:00")
    collector = FakeCollector(
        clock, down=lambda now: at("11:00:00") <= now < back_at, periods=PERIODS
    )
    agent = make_agent(
        tmp_path, clock, TruthSource(clock), collector, max_reports=4, query_offset=OFFSET
    )
    stop_at(agent, clock, back_at + HOUR)

    await agent.loop.run()

    windows = collector.windows()
    assert agent.metrics.compactions._value.get() > 0
    assert [s for s, _ in windows[1:]] == [e for _, e in windows[:-1]]
    assert not [w for w in windows if w[0] < BOUNDARY < w[1]]
    first, last = windows[0][0], windows[-1][1]
    old = sum(
        int(r.metrics["mqtt_messages"])
        for r in collector.stored.values()
        if r.window_end <= BOUNDARY
    )
    new = sum(
        int(r.metrics["mqtt_messages"])
        for r in collector.stored.values()
        if r.window_start >= BOUNDARY
    )
    assert old == messages_in(Window(first, BOUNDARY))
    assert new == messages_in(Window(BOUNDARY, last))


async def test_known_boundaries_survive_a_restart(tmp_path):
    clock = ManualClock(at("12:00:31"))
    first = make_agent(
        tmp_path,
        clock,
        TruthSource(clock),
        FakeCollector(clock, periods=PERIODS),
        interval=HOUR,
        query_offset=OFFSET,
    )
    await first.loop.run_once(attempts=1)
    first.db.close()

    # Restarted, and the collector (an older one) names no periods any more.
    clock.set(at("13:00:31"))
    collector = FakeCollector(clock)
    second = make_agent(
        tmp_path, clock, TruthSource(clock), collector, interval=HOUR, query_offset=OFFSET
    )
    await second.loop.run_once(attempts=1)

    assert BOUNDARY in second.boundaries.moments()
    assert collector.windows() == [(at("12:00:00"), BOUNDARY), (BOUNDARY, at("13:00:00"))]


def test_boundaries_older_than_the_retention_are_dropped_and_the_set_stays_small(tmp_path):
    clock = ManualClock(BOUNDARY)
    db = StateDb.in_dir(tmp_path)
    known = KnownBoundaries(SqliteBoundaryStore(db), clock)
    old = BOUNDARY - RETENTION - timedelta(seconds=1)

    new = known.learn([PeriodBounds(start=old, end=BOUNDARY)])

    assert new == [BOUNDARY]
    assert known.moments() == [BOUNDARY]
    daily = [BOUNDARY + timedelta(days=d) for d in range(1, 100)]
    known.add(daily)
    assert known.moments() == [BOUNDARY, *daily[: MAX_KNOWN - 1]]


def test_unreadable_stored_boundaries_are_ignored_then_replaced(tmp_path):
    clock = ManualClock(BOUNDARY)
    db = StateDb.in_dir(tmp_path)
    db.put(BILLING_BOUNDARIES, "{not json")
    known = KnownBoundaries(SqliteBoundaryStore(db), clock)

    assert known.moments() == []
    known.learn(PERIODS)
    assert known.moments() == [PERIODS[0].start, BOUNDARY, PERIODS[1].end]


class LeaseStore:
    """The Lease API in memory, with ``resourceVersion`` checks."""

    def __init__(self) -> None:
        self.lease: LeaseRecord | None = None
        self.versions = itertools.count(1)

    async def get_lease(self, namespace: str, name: str) -> LeaseRecord | None:
        return self.lease

    async def create_lease(self, namespace: str, lease: LeaseRecord) -> LeaseRecord:
        self.lease = replace(lease, resource_version=str(next(self.versions)))
        return self.lease

    async def replace_lease(self, namespace: str, lease: LeaseRecord) -> LeaseRecord:
        if self.lease is None or lease.resource_version != self.lease.resource_version:
            raise KubeConflict("the Lease changed")
        self.lease = replace(lease, resource_version=str(next(self.versions)))
        return self.lease


def elector(name: str, db: StateDb, api: LeaseStore, clock: ManualClock) -> LeaderElector:
    return LeaderElector(
        api=api,
        namespace="ns",
        lease_name="usage-agent",
        identity=name,
        clock=clock,
        lease_duration=timedelta(seconds=15),
        db=db,
        spool=Spool(db),
        metrics=AgentMetrics(CollectorRegistry()),
        health=Health(clock, HOUR),
        boundaries=KnownBoundaries(SqliteBoundaryStore(db), clock),
    )


async def test_a_successor_knows_the_boundaries_its_predecessor_learned(tmp_path):
    clock = ManualClock(at("12:00:00"))
    api = LeaseStore()
    db_a, db_b = StateDb.in_dir(tmp_path / "a"), StateDb.in_dir(tmp_path / "b")
    a, b = elector("a", db_a, api, clock), elector("b", db_b, api, clock)
    assert await a.step()
    KnownBoundaries(SqliteBoundaryStore(db_a), clock).learn(PERIODS)
    assert await a.step()  # the renewal publishes them
    assert BOUNDARIES_ANNOTATION in api.lease.annotations

    assert not await b.step()
    clock.advance(timedelta(seconds=16))  # a is gone; b waits out the Lease
    assert await b.step()

    assert KnownBoundaries(SqliteBoundaryStore(db_b), clock).moments() == [
        PERIODS[0].start,
        BOUNDARY,
        PERIODS[1].end,
    ]
