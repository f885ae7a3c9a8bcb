"""Spool compaction: totals preserved exactly, never across a billing month, never a sent report."""

from __future__ import annotations

import tempfile
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from agent.adapters.spool import Spool
from agent.adapters.state_db import StateDb
from agent.services.spooling import ReportSpool
from agent.services.telemetry import AgentMetrics
from common.catalogue import MetricCatalogue
from common.clock import ManualClock
from common.schema import UsageReport, derive_report_id
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
    from agent.services.compaction import compact_reports

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
