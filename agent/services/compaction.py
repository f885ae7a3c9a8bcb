"""Folding consecutive waiting reports into one that covers their combined window.

The result bills exactly what the parts bill: ``increment`` values are summed, the newest
``set`` value is kept and ``max`` takes the peak (``common.semantics.fold``, in window order).
A metric missing from any part stays listed as missing, so a partial window is never hidden.
The compacted report's id is ``derive_report_id`` over the combined window; since only reports
that were never sent are folded, that id was never seen by the collector and no delivered
report can be counted twice.

A group must be contiguous, may only hold metrics whose semantics the catalogue knows, and
never crosses a billing boundary: neither a known subscription-period boundary (Stripe periods
start at any second, see ``services.boundaries``) nor a UTC month (harmless where periods are
months). A run stops at a boundary, so what the collector bills per period is unchanged.

The boundaries are the newest known when compaction runs. A waiting report that already
straddles a boundary learned after it was collected (or folded) is left as it is: it is built,
and the collector bills a straddling window in the period that holds its last second. It is
never folded with anything afterwards, and the reports after it are folded up to it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime, timedelta

from pydantic import ValidationError

from agent.adapters.spool import SpoolEntry
from agent.services.boundaries import straddles
from agent.services.counters import as_report_number
from common.catalogue import MetricCatalogue
from common.schema import MetricCoverage, UsageReport
from common.semantics import fold
from common.windows import month_start


class NotCompactable(ValueError):
    """These reports cannot be folded into one (the message says why)."""


def billing_month(report: UsageReport) -> datetime:
    """The UTC month a report bills to: the month of the last instant of its window."""
    return month_start(report.window_end - timedelta(microseconds=1))


def within_one_period(start: datetime, end: datetime, known: Sequence[datetime]) -> bool:
    """True when the window ``(start, end]`` crosses neither a known boundary nor a UTC month."""
    last_month = month_start(end - timedelta(microseconds=1))
    return month_start(start) == last_month and not straddles(start, end, known)


def compact_reports(
    reports: Sequence[UsageReport],
    catalogue: MetricCatalogue,
    boundaries: Sequence[datetime] = (),
) -> UsageReport:
    """One report for consecutive reports of one customer instance and one billing period."""
    if len(reports) < 2:
        raise NotCompactable("need at least two reports")
    first = reports[0]
    for previous, current in itertools.pairwise(reports):
        if current.window_start != previous.window_end:
            raise NotCompactable(f"{previous.window_end} and {current.window_start} not adjacent")
    if any(
        (r.customer_id, r.instance_id) != (first.customer_id, first.instance_id) for r in reports
    ):
        raise NotCompactable("reports of different customer instances")
    if month_start(first.window_start) != billing_month(reports[-1]):
        raise NotCompactable("the reports span a billing-month boundary")
    if straddles(first.window_start, reports[-1].window_end, boundaries):
        raise NotCompactable("the reports span a billing-period boundary")
    names: list[str] = []
    for report in reports:
        names.extend(n for n in report.metrics if n not in names)
    unknown = [n for n in names if n not in catalogue]
    if unknown:
        raise NotCompactable(f"no billing semantics known for {', '.join(unknown)}")
    metrics: dict[str, int | float] = {}
    for name in names:
        folded = fold(
            catalogue[name].semantics, (r.metrics[name] for r in reports if name in r.metrics)
        )
        if folded is not None:
            metrics[name] = as_report_number(folded)
    missing: list[str] = []
    for report in reports:
        missing.extend(m for m in report.missing if m not in missing)
    unmeasured: list[str] = []
    for report in reports:
        unmeasured.extend(m for m in report.unmeasured if m not in unmeasured)
    active = [r.active_devices for r in reports if r.active_devices is not None]
    total = [r.total_devices for r in reports if r.total_devices is not None]
    try:
        return UsageReport(
            customer_id=first.customer_id,
            instance_id=first.instance_id,
            window_start=first.window_start,
            window_end=reports[-1].window_end,
            metrics=metrics,
            active_devices=active[-1] if active else None,
            total_devices=total[-1] if total else None,
            partial=any(r.partial for r in reports),
            missing=missing,
            unmeasured=unmeasured,
            coverage=fold_coverage(reports),
            agent_version=reports[-1].agent_version,
        )
    except ValidationError as exc:
        raise NotCompactable(f"the folded report is not valid: {exc}") from exc


def fold_coverage(reports: Sequence[UsageReport]) -> dict[str, MetricCoverage]:
    """Samples and expected samples add up; the method is ``grid`` if any part used the grid."""
    parts: dict[str, list[MetricCoverage]] = {}
    for report in reports:
        for name, coverage in report.coverage.items():
            parts.setdefault(name, []).append(coverage)
    return {
        name: MetricCoverage(
            samples=sum(c.samples for c in covered),
            expected=sum(c.expected for c in covered),
            series=max(c.series for c in covered),
            method=next((c.method for c in covered if c.method == "grid"), covered[-1].method),
        )
        for name, covered in parts.items()
    }


def compactable_run(
    entries: Sequence[SpoolEntry], size: int, boundaries: Sequence[datetime] = ()
) -> list[SpoolEntry]:
    """The oldest run of at most ``size`` adjacent, never-sent entries within one billing period.

    ``entries`` are oldest first; ``boundaries`` are the known period boundaries, ascending.
    Returns fewer than two entries when nothing can be folded.
    """
    run: list[SpoolEntry] = []
    for entry in entries:
        report = entry.report
        fits = (
            not entry.ever_sent
            and run
            and report.window_start == run[-1].report.window_end
            and within_one_period(run[0].report.window_start, report.window_end, boundaries)
        )
        if fits:
            run.append(entry)
        else:
            if len(run) >= 2:
                return run
            run = [] if entry.ever_sent else [entry]
            if run and not within_one_period(report.window_start, report.window_end, boundaries):
                run = []  # a single report already spanning periods cannot start a group
        if len(run) >= size:
            return run
    return run if len(run) >= 2 else []
