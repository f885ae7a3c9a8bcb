"""Spool compaction: exact totals, never across a billing month or period, never a sent report."""

from __future__ import annotations

import bisect
import itertools
import tempfile
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from agent.adapters.boundary_state import SqliteBoundaryStore
from agent.adapters.spool import Spool
from agent.adapters.state_db import StateDb
from agent.services.boundaries import KnownBoundaries
from agent.services.compaction import NotCompactable, compact_reports
from agent.services.spooling import ReportSpool
from agent.services.telemetry import AgentMetrics
from common.billing_periods import PeriodBounds
from common.catalogue import MetricCatalogue
from common.clock import ManualClock
from common.schema import MetricCoverage, UsageReport, derive_report_id
from common.semantics import fold_pair, to_decimal
from common.windows import month_start

HOUR = timedelta(hours=1)
# Starts near a month end so groups meet the billing-month boundary.
MONTH_END = datetime(2024, 2, 29, 12, tzinfo=UTC)

window_values = st.fixed_dictionaries(
    {},
    optional={
        "mqtt_messages": st.integers(0, 10**9),
        "api_requests": st.integers(0, 10**6),
        "devices": st.integers(0, 50_000),
        "storage_gb": st.decimals(0, 10_000, places=3, allow_nan=False).map(float),
    },
)


def make_report(index: int, metrics: dict[str, float | int], start: datetime) -> UsageReport:
    window_start = start + index * HOUR
    missing = [m for m in ("mqtt_messages", "devices") if m not in metrics][:1]
    return UsageReport(
        customer_id="c",
        instance_id="i",
        window_start=window_start,
        window_end=window_start + HOUR,
        metrics=metrics,
        active_devices=metrics.get("devices"),  # type: ignore[arg-type]
        missing=missing,
    )


def billed_per_month(reports: list[UsageReport]) -> dict[tuple[datetime, str], Decimal]:
    """What the collector bills per month: sum of increments, last set, max of max."""
    catalogue = MetricCatalogue.default()
    result: dict[tuple[datetime, str], Decimal] = {}
    for report in sorted(reports, key=lambda r: r.window_start):
        month = month_start(report.window_start)
        for name, value in report.metrics.items():
            key = (month, name)
            exact = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
            semantics = catalogue[name].semantics.value
            if key not in result or semantics == "set":
                result[key] = exact
            elif semantics == "increment":
                result[key] += exact
            else:
                result[key] = max(result[key], exact)
    return result


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(window_values, min_size=1, max_size=40),
    limit=st.integers(2, 8),
    offset_hours=st.integers(0, 30),
)
def test_compaction_preserves_what_is_billed_exactly(values, limit, offset_hours):
    start = MONTH_END + offset_hours * HOUR
    reports = [make_report(i, v, start) for i, v in enumerate(values)]
    clock = ManualClock(start + len(values) * HOUR)
    metrics = AgentMetrics(CollectorRegistry())
    with tempfile.TemporaryDirectory() as tmp:
        db = StateDb.in_dir(Path(tmp))
        spool = ReportSpool(
            Spool(db),
            max_reports=limit,
            catalogue=MetricCatalogue.default(),
            clock=clock,
            metrics=metrics,
        )
        for report in reports:
            with db.transaction():
                spool.add(report, state_before=None, state_after=None)
        entries = spool.spool.oldest(10_000)
        db.close()

    spooled = [e.report for e in entries]
    assert billed_per_month(spooled) == billed_per_month(reports)
    assert sum(e.windows for e in entries) == len(reports)
    assert [r.window_start for r in spooled[1:]] == [r.window_end for r in spooled[:-1]]
    for entry in entries:
        report = entry.report
        assert month_start(report.window_start) == month_start(report.window_end - HOUR)
        assert report.id == derive_report_id("c", "i", report.window_start, report.window_end)
        covered = [r for r in reports if report.window_start <= r.window_start < report.window_end]
        missing = {m for r in covered for m in r.missing}
        assert set(report.missing) == missing
        assert report.partial == bool(missing)
    months = len({month_start(r.window_start) for r in reports})
    # Bounded: at most the limit, except one report per billing month that cannot merge.
    assert len(entries) <= max(limit, months + 1)


def test_a_report_that_may_have_been_sent_is_never_folded(tmp_path):
    start = datetime(2024, 3, 1, tzinfo=UTC)
    clock = ManualClock(start + 10 * HOUR)
    db = StateDb.in_dir(tmp_path)
    spool = ReportSpool(
        Spool(db),
        max_reports=3,
        catalogue=MetricCatalogue.default(),
        clock=clock,
        metrics=AgentMetrics(CollectorRegistry()),
    )
    reports = [make_report(i, {"mqtt_messages": i + 1}, start) for i in range(6)]
    with db.transaction():
        spool.add(reports[0], state_before=None, state_after=None)
    head = spool.spool.head()
    spool.spool.mark_attempt(head.seq, clock.now())  # sent once: it may be at the collector
    for report in reports[1:]:
        with db.transaction():
            spool.add(report, state_before=None, state_after=None)

    entries = spool.spool.oldest(100)
    assert entries[0].report == reports[0]
    assert entries[0].attempts == 1
    assert sum(e.report.metrics["mqtt_messages"] for e in entries) == sum(range(1, 7))


def test_when_nothing_can_be_compacted_the_report_is_kept_and_counted(tmp_path):
    start = datetime(2024, 3, 1, tzinfo=UTC)
    clock = ManualClock(start + 10 * HOUR)
    metrics = AgentMetrics(CollectorRegistry())
    db = StateDb.in_dir(tmp_path)
    spool = ReportSpool(
        Spool(db),
        max_reports=2,
        catalogue=MetricCatalogue.default(),
        clock=clock,
        metrics=metrics,
    )
    for i in range(4):
        report = make_report(i, {"mqtt_messages": 5}, start)
        with db.transaction():
            spool.add(report, state_before=None, state_after=None)
        spool.spool.mark_attempt(spool.spool.oldest(100)[-1].seq, clock.now())

    assert spool.spool.depth() == 4
    assert metrics.spool_overflow._value.get() == 2
    assert metrics.compactions._value.get() == 0


def test_folded_values_follow_each_metrics_semantics(tmp_path):
    start = datetime(2024, 3, 1, tzinfo=UTC)
    parts = [
        make_report(0, {"mqtt_messages": 10, "devices": 7, "storage_gb": 1.5}, start),
        make_report(1, {"mqtt_messages": 5, "storage_gb": 0.25}, start),
        make_report(2, {"mqtt_messages": 1, "devices": 4, "storage_gb": 1.25}, start),
    ]

    folded = compact_reports(parts, MetricCatalogue.default())

    assert folded.metrics == {"mqtt_messages": 16, "devices": 4, "storage_gb": 1.5}
    assert (folded.window_start, folded.window_end) == (start, start + 3 * HOUR)
    assert folded.missing == ["devices"]
    by_month = defaultdict(list)
    by_month[month_start(folded.window_start)].append(folded)
    assert len(by_month) == 1


def test_a_folded_report_keeps_every_unmeasured_metric_and_adds_up_coverage():
    start = datetime(2024, 3, 1, tzinfo=UTC)
    gap = UsageReport(
        customer_id="c",
        instance_id="i",
        window_start=start,
        window_end=start + HOUR,
        metrics={"devices": 3},
        unmeasured=["mqtt_messages"],
        coverage={"mqtt_messages": MetricCoverage(samples=0, expected=240, series=0)},
    )
    after = UsageReport(
        customer_id="c",
        instance_id="i",
        window_start=start + HOUR,
        window_end=start + 2 * HOUR,
        metrics={"devices": 3, "mqtt_messages": 90},
        coverage={"mqtt_messages": MetricCoverage(samples=240, expected=240, series=2)},
    )

    folded = compact_reports([gap, after], MetricCatalogue.default())

    assert folded.metrics == {"devices": 3, "mqtt_messages": 90}
    assert folded.unmeasured == ["mqtt_messages"]
    assert folded.complete is False
    assert folded.coverage["mqtt_messages"] == MetricCoverage(samples=240, expected=480, series=2)


# Billing-period boundaries: Stripe periods start at any second, not at a UTC month.

BOUNDARY = datetime(2024, 3, 19, 12, tzinfo=UTC)
PERIODS = [
    PeriodBounds(start=datetime(2024, 2, 19, 12, tzinfo=UTC), end=BOUNDARY),
    PeriodBounds(start=BOUNDARY, end=datetime(2024, 4, 19, 12, tzinfo=UTC)),
]


def spool_with_boundaries(
    directory: Path, clock: ManualClock, limit: int
) -> tuple[StateDb, ReportSpool, KnownBoundaries, AgentMetrics]:
    db = StateDb.in_dir(directory)
    metrics = AgentMetrics(CollectorRegistry())
    boundaries = KnownBoundaries(SqliteBoundaryStore(db), clock)
    spool = ReportSpool(
        Spool(db),
        max_reports=limit,
        catalogue=MetricCatalogue.default(),
        clock=clock,
        metrics=metrics,
        boundaries=boundaries,
    )
    return db, spool, boundaries, metrics


def spool_all(db: StateDb, spool: ReportSpool, reports: list[UsageReport]) -> None:
    for report in reports:
        with db.transaction():
            spool.add(report, state_before=None, state_after=None)


def hourly(start: datetime, values: list[dict[str, float | int]]) -> list[UsageReport]:
    return [
        UsageReport(
            customer_id="c",
            instance_id="i",
            window_start=start + i * HOUR,
            window_end=start + (i + 1) * HOUR,
            metrics=metrics,
        )
        for i, metrics in enumerate(values)
    ]


def period_of(moment: datetime, boundaries: list[datetime]) -> int:
    """Which period a window ending at ``moment`` bills in: the one holding its last instant."""
    return bisect.bisect_right(boundaries, moment - timedelta(microseconds=1))


def billed_per_period(
    reports: list[UsageReport], boundaries: list[datetime]
) -> dict[tuple[int, str], Decimal]:
    """What the collector bills per period: sum of increments, last set, max of max."""
    catalogue = MetricCatalogue.default()
    result: dict[tuple[int, str], Decimal] = {}
    for report in sorted(reports, key=lambda r: r.window_start):
        period = period_of(report.window_end, boundaries)
        for name, value in report.metrics.items():
            key = (period, name)
            folded = fold_pair(catalogue[name].semantics, result.get(key), to_decimal(value))
            assert folded is not None
            result[key] = folded
    return result


def test_compaction_never_folds_across_a_subscription_period_boundary(tmp_path):
    clock = ManualClock(datetime(2024, 3, 19, 14, 1, tzinfo=UTC))
    db, spool, boundaries, metrics = spool_with_boundaries(tmp_path, clock, limit=2)
    boundaries.learn(PERIODS)  # from an earlier answer of the collector
    reports = hourly(
        datetime(2024, 3, 19, 9, tzinfo=UTC),
        [
            {"mqtt_messages": 1000, "storage_gb": 20.0, "devices": 5},  # 09-10
            {"mqtt_messages": 1200, "storage_gb": 50.0, "devices": 6},  # 10-11
            {"mqtt_messages": 800, "storage_gb": 35.0, "devices": 7},  # 11-12
            {"mqtt_messages": 400, "storage_gb": 10.0, "devices": 9},  # 12-13
            {"mqtt_messages": 300, "storage_gb": 12.5, "devices": 8},  # 13-14
        ],
    )

    spool_all(db, spool, reports)

    spooled = [e.report for e in spool.spool.oldest(100)]
    before = [r for r in spooled if r.window_end <= BOUNDARY]
    after = [r for r in spooled if r.window_start >= BOUNDARY]
    assert before + after == spooled  # no report straddles 12:00
    assert sum(r.metrics["mqtt_messages"] for r in before) == 3000
    assert max(r.metrics["storage_gb"] for r in before) == 50.0
    assert before[-1].metrics["devices"] == 7
    assert sum(r.metrics["mqtt_messages"] for r in after) == 700
    assert max(r.metrics["storage_gb"] for r in after) == 12.5
    assert after[-1].metrics["devices"] == 8
    assert metrics.compactions._value.get() == 2  # it did compact, within each period
    assert billed_per_period(spooled, [BOUNDARY]) == billed_per_period(reports, [BOUNDARY])


def test_compact_reports_refuses_a_group_across_a_known_boundary():
    parts = hourly(BOUNDARY - HOUR, [{"mqtt_messages": 1}, {"mqtt_messages": 2}])

    with pytest.raises(NotCompactable, match="billing-period boundary"):
        compact_reports(parts, MetricCatalogue.default(), [BOUNDARY])
    assert compact_reports(parts, MetricCatalogue.default(), []).metrics == {"mqtt_messages": 3}


def test_a_report_folded_before_a_boundary_was_learned_is_left_as_is(tmp_path):
    start = datetime(2024, 3, 19, 9, tzinfo=UTC)
    late = datetime(2024, 3, 19, 10, 30, tzinfo=UTC)
    clock = ManualClock(start + 6 * HOUR)
    db, spool, boundaries, _ = spool_with_boundaries(tmp_path, clock, limit=2)
    reports = hourly(start, [{"mqtt_messages": 10 * (i + 1)} for i in range(5)])
    spool_all(db, spool, reports[:3])
    folded_early = spool.spool.head()
    assert folded_early is not None
    assert (folded_early.report.window_start, folded_early.report.window_end) == (
        start,
        start + 2 * HOUR,
    )

    boundaries.learn([PeriodBounds(start=late, end=late + timedelta(days=30))])
    spool_all(db, spool, reports[3:])

    spooled = [e.report for e in spool.spool.oldest(100)]
    assert spooled[0] == folded_early.report  # built already: kept, same id, not refolded
    assert [(r.window_start, r.window_end) for r in spooled] == [
        (start, start + 2 * HOUR),
        (start + 2 * HOUR, start + 4 * HOUR),  # the run stopped at the straddling report
        (start + 4 * HOUR, start + 5 * HOUR),
    ]
    assert sum(r.metrics["mqtt_messages"] for r in spooled) == 150


def split_at(
    start: datetime, end: datetime, cuts: list[datetime]
) -> list[tuple[datetime, datetime]]:
    edges = [start, *[c for c in cuts if start < c < end], end]
    return list(itertools.pairwise(edges))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    hours=st.integers(1, 30),
    boundary_seconds=st.lists(st.integers(1, 30 * 3600 - 1), max_size=5, unique=True),
    limit=st.integers(2, 8),
)
def test_compaction_never_folds_across_a_known_boundary_and_bills_each_period_exactly(
    data, hours, boundary_seconds, limit
):
    start = datetime(2024, 3, 19, 3, tzinfo=UTC)
    known = sorted(start + timedelta(seconds=s) for s in boundary_seconds)
    # Some boundaries were known when the windows were collected (those windows were cut),
    # the others only when compaction runs: windows straddling those are spooled whole.
    cut_when_collected = [b for b in known if data.draw(st.booleans(), label=f"cut at {b}")]
    windows = [
        piece
        for hour in range(hours)
        for piece in split_at(start + hour * HOUR, start + (hour + 1) * HOUR, cut_when_collected)
    ]
    reports = [
        UsageReport(
            customer_id="c",
            instance_id="i",
            window_start=s,
            window_end=e,
            metrics=data.draw(window_values, label=f"values {s}"),
        )
        for s, e in windows
    ]
    clock = ManualClock(start + (hours + 1) * HOUR)
    with tempfile.TemporaryDirectory() as tmp:
        db, spool, boundaries, _ = spool_with_boundaries(Path(tmp), clock, limit)
        boundaries.add(known)
        spool_all(db, spool, reports)
        entries = spool.spool.oldest(10_000)
        db.close()

    spooled = [e.report for e in entries]
    originals = {r.id: r for r in reports}
    for entry in entries:
        report = entry.report
        inside = [b for b in known if report.window_start < b < report.window_end]
        if entry.windows > 1:
            assert not inside, f"folded {report.window_start}..{report.window_end} across {inside}"
        else:
            assert originals[report.id] == report  # a straddling report is kept as it was
    assert billed_per_period(spooled, known) == billed_per_period(reports, known)
    assert sum(e.windows for e in entries) == len(reports)
    assert [r.window_start for r in spooled[1:]] == [r.window_end for r in spooled[:-1]]
