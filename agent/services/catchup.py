"""Collecting every window since the watermark, one by one, into the spool.

The watermark is the end of the newest window whose report is safely in the spool. Each cycle
collects the windows from there to the newest complete one (its end plus the query offset has
passed), oldest first, each with queries evaluated at that window's end, so a restart or an
outage neither skips nor repeats a window. A window's report, the counter baselines it used and
the new watermark are committed in one transaction.

A window whose sources failed is deferred: the catch-up stops there and the next cycle tries it
again. How long depends on the source. Prometheus keeps history, so a window whose Prometheus
metrics failed waits until it is about to fall out of ``max_catchup`` (one interval before), and
is then measured exactly from its own baselines once Prometheus answers. Nothing is closed with
usage missing while Prometheus can still give it. A window whose only failures are sources with
no history (the device API, a direct /metrics scrape) waits ``partial_after`` and is then spooled
partial (the failed metrics listed in ``missing``, never zero) so the windows after it are not
held back; a scraped counter's increase then rolls into the next window. Windows older than
``max_catchup`` are not collected: the agent logs and counts them.

A window with a known billing-period boundary strictly inside it is collected as one piece per
period (``services.boundaries``). A piece that ends at a boundary is due once the boundary plus
the query offset has passed, like any window end, so a scraped counter is read at the boundary
too; the rest of the window follows at its aligned end. The watermark then sits at the boundary,
and the next cycle resumes from there with the unaligned first window ``Schedule.windows`` makes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from agent.adapters.state_db import SCRAPE_BASELINES, StateDb
from agent.services.boundaries import KnownBoundaries, split_window
from agent.services.collect import CollectedReport
from agent.services.spooling import ReportSpool
from agent.services.telemetry import AgentMetrics
from common.clock import Clock
from common.windows import EPOCH, Window, last_complete_window, window_containing

log = structlog.get_logger(__name__)


class ReportSource(Protocol):
    async def collect(self, window: Window) -> CollectedReport: ...


@dataclass(frozen=True)
class Schedule:
    """When windows are due and how far back they are caught up."""

    interval: timedelta
    query_offset: timedelta
    max_catchup: timedelta = timedelta(days=7)
    partial_after: timedelta = timedelta(hours=1)

    def patience(self, *, awaiting_history: bool) -> timedelta:
        """How long after its end a failed window is retried before it is spooled partial."""
        if awaiting_history:
            return max(self.partial_after, self.max_catchup - self.interval)
        return self.partial_after

    def due_end(self, now: datetime) -> datetime:
        """The end of the newest window whose end plus the query offset has passed."""
        return last_complete_window(now - self.query_offset, self.interval).end

    def aligned_ceiling(self, moment: datetime) -> datetime:
        window = window_containing(moment, self.interval)
        return moment if window.start == moment else window.end

    def windows(self, after: datetime, until: datetime) -> list[Window]:
        """Windows from ``after`` to ``until``; an unaligned ``after`` first gets a short one."""
        result: list[Window] = []
        start = after
        boundary = self.aligned_ceiling(after)
        if boundary != after and boundary <= until:
            result.append(Window(after, boundary))
            start = boundary
        while start + self.interval <= until:
            result.append(Window(start, start + self.interval))
            start += self.interval
        return result

    def plan(self, after: datetime, now: datetime, cuts: Sequence[datetime] = ()) -> list[Window]:
        """The windows due at ``now`` from ``after``, cut at the boundaries ``cuts``.

        Pieces of the window in progress that end at a boundary already due come last.
        """
        pieces = [p for w in self.windows(after, self.due_end(now)) for p in split_window(w, cuts)]
        start = pieces[-1].end if pieces else after
        for cut in cuts:
            if start < cut <= now - self.query_offset:
                pieces.append(Window(start, cut))
                start = cut
        return pieces

    def next_end(self, now: datetime, cuts: Sequence[datetime] = ()) -> datetime:
        """The end of the next window or piece to fall due after ``now``."""
        aligned = self.due_end(now) + self.interval
        early = [cut for cut in cuts if now - self.query_offset < cut < aligned]
        return min(early, default=aligned)


@dataclass(frozen=True)
class CatchUpResult:
    collected: int
    deferred: Window | None = None
    missing: tuple[str, ...] = ()  # the deferred window's unmeasured metrics
    errors: tuple[str, ...] = ()  # and why their sources failed
    awaiting_history: bool = False

    @property
    def retry_rule(self) -> str:
        if self.awaiting_history:
            return (
                "it is retried until Prometheus answers, and measured exactly then (sent partial "
                "only if it is about to fall out of AGENT_MAX_CATCHUP)"
            )
        return "it is retried, and sent partial once older than AGENT_PARTIAL_AFTER"


class CatchUp:
    """Collects due windows into the spool and advances the watermark."""

    def __init__(
        self,
        *,
        source: ReportSource,
        db: StateDb,
        spool: ReportSpool,
        clock: Clock,
        schedule: Schedule,
        metrics: AgentMetrics,
        boundaries: KnownBoundaries | None = None,
        crash_point: Callable[[str], None] = lambda point: None,
    ) -> None:
        self._source = source
        self._boundaries = boundaries
        self._db = db
        self._spool = spool
        self._clock = clock
        self._schedule = schedule
        self._metrics = metrics
        self._crash = crash_point

    def ensure_watermark(self, backlog: int) -> datetime:
        """On a first start, begin ``backlog`` windows before the newest complete one."""
        watermark = self._db.watermark()
        if watermark is None:
            due = self._schedule.due_end(self._clock.now())
            watermark = due - backlog * self._schedule.interval
            with self._db.transaction():
                self._db.set_watermark(watermark)
            log.info("watermark_initialised", watermark=watermark.isoformat())
        return watermark

    def _cuts(self) -> list[datetime]:
        return [] if self._boundaries is None else self._boundaries.moments()

    def next_end(self, now: datetime) -> datetime:
        """The end of the next window or boundary piece to fall due after ``now``."""
        return self._schedule.next_end(now, self._cuts())

    def pending(self) -> list[Window]:
        """The due windows not collected yet, oldest first, within ``max_catchup``.

        A window with a known boundary strictly inside it is returned as one piece per period.
        """
        now = self._clock.now()
        watermark = self._db.watermark() or self.ensure_watermark(0)
        earliest = max(EPOCH, now - self._schedule.max_catchup)
        if watermark < earliest:
            start = self._schedule.aligned_ceiling(earliest)
            skipped = int((start - watermark) / self._schedule.interval)
            if skipped:
                self._metrics.windows_skipped.inc(skipped)
                log.error(
                    "windows_skipped",
                    count=skipped,
                    since=watermark.isoformat(),
                    until=start.isoformat(),
                    reason="older than AGENT_MAX_CATCHUP",
                )
            with self._db.transaction():
                self._db.set_watermark(start)
            watermark = start
        return self._schedule.plan(watermark, now, self._cuts())

    async def run(self, *, stopping: Callable[[], bool] = lambda: False) -> CatchUpResult:
        """Collect every pending window into the spool, oldest first."""
        collected = 0
        for window in self.pending():
            if stopping():
                break
            result = await self._source.collect(window)
            report = result.report
            age = self._clock.now() - window.end
            patience = self._schedule.patience(awaiting_history=bool(result.awaiting_history))
            if report.partial and age < patience:
                self._metrics.windows_deferred.inc()
                log.warning(
                    "window_deferred",
                    window=str(window),
                    missing=report.missing,
                    retry="next cycle",
                    partial_in_seconds=int((patience - age).total_seconds()),
                )
                return CatchUpResult(
                    collected,
                    window,
                    tuple(report.missing),
                    result.errors,
                    bool(result.awaiting_history),
                )
            if result.awaiting_history:
                log.error(
                    "usage_not_measured",
                    window=str(window),
                    metrics=list(result.awaiting_history),
                    reason="the source failed until the window reached AGENT_MAX_CATCHUP",
                )
            self._store(result)
            collected += 1
            self._crash("after_spool")
        return CatchUpResult(collected)

    def _store(self, result: CollectedReport) -> None:
        report = result.report
        with self._db.transaction():
            before = self._db.get(SCRAPE_BASELINES)
            result.commit()
            after = self._db.get(SCRAPE_BASELINES)
            self._spool.add(report, state_before=before, state_after=after)
            self._db.set_watermark(report.window_end)
        self._metrics.last_collection.set(self._clock.now().timestamp())
        for metric in report.unmeasured:
            self._metrics.windows_unmeasured.labels(metric).inc()
        self._spool.refresh_gauges()
        log.info(
            "report_spooled",
            report_id=str(report.id),
            window_start=report.window_start.isoformat(),
            window_end=report.window_end.isoformat(),
            partial=report.partial,
            unmeasured=report.unmeasured,
        )
