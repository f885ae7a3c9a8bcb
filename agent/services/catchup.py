"""Collecting every window since the watermark, one by one, into the spool.

The watermark is the end of the newest window whose report is safely in the spool. Each cycle
collects the windows from there to the newest complete one (its end plus the query offset has
passed), oldest first, each with queries evaluated at that window's end, so a restart or an
outage neither skips nor repeats a window. A window's report, the counter baselines it used and
the new watermark are committed in one transaction.

A window whose sources failed is not spooled while it is younger than ``partial_after``: the
catch-up stops there and the next cycle tries it again. Once older, it is spooled partial (the
failed metrics listed in ``missing``, never zero) so the windows after it are not held back.
Windows older than ``max_catchup`` are not collected: the agent logs and counts them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from agent.adapters.state_db import SCRAPE_BASELINES, StateDb
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


@dataclass(frozen=True)
class CatchUpResult:
    collected: int
    deferred: Window | None = None


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
        crash_point: Callable[[str], None] = lambda point: None,
    ) -> None:
        self._source = source
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

    def pending(self) -> list[Window]:
        """The due windows not collected yet, oldest first, within ``max_catchup``."""
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
        return self._schedule.windows(watermark, self._schedule.due_end(now))

    async def run(self, *, stopping: Callable[[], bool] = lambda: False) -> CatchUpResult:
        """Collect every pending window into the spool, oldest first."""
        collected = 0
        for window in self.pending():
            if stopping():
                break
            result = await self._source.collect(window)
            report = result.report
            age = self._clock.now() - window.end
            if report.partial and age < self._schedule.partial_after:
                self._metrics.windows_deferred.inc()
                log.warning(
                    "window_deferred",
                    window=str(window),
                    missing=report.missing,
                    retry="next cycle",
                    partial_in_seconds=int((self._schedule.partial_after - age).total_seconds()),
                )
                return CatchUpResult(collected, window)
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
        self._spool.refresh_gauges()
        log.info(
            "report_spooled",
            report_id=str(report.id),
            window_start=report.window_start.isoformat(),
            window_end=report.window_end.isoformat(),
            partial=report.partial,
        )
