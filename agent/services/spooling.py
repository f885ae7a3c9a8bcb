"""Putting reports into the spool while keeping it bounded without losing billable usage.

When the spool holds ``max_reports`` reports, the oldest run of never-sent reports is folded
into one (see ``compaction``), never across a billing-period boundary known at that moment. If
nothing can be folded (every old report was already sent, or each sits alone in its billing
period), the report is still kept: the agent logs ``spool_over_limit`` and counts
``usage_agent_spool_overflow_total``; usage is never dropped.
"""

from __future__ import annotations

from datetime import datetime

import structlog

from agent.adapters.spool import Spool
from agent.services.boundaries import KnownBoundaries
from agent.services.compaction import NotCompactable, compact_reports, compactable_run
from agent.services.telemetry import AgentMetrics
from common.catalogue import MetricCatalogue
from common.clock import Clock
from common.schema import UsageReport

log = structlog.get_logger(__name__)

# Fold at least this share of the limit at once, so compaction does not run on every insert.
_BATCH_DIVISOR = 10


class ReportSpool:
    """The spool as the agent uses it: bounded adds, gauges kept up to date."""

    def __init__(
        self,
        spool: Spool,
        *,
        max_reports: int,
        catalogue: MetricCatalogue,
        clock: Clock,
        metrics: AgentMetrics,
        boundaries: KnownBoundaries | None = None,
    ) -> None:
        self.spool = spool
        self._boundaries = boundaries
        self._max = max_reports
        self._catalogue = catalogue
        self._clock = clock
        self._metrics = metrics

    def add(
        self, report: UsageReport, *, state_before: str | None, state_after: str | None
    ) -> None:
        """Spool ``report``; joins the caller's transaction, so call it inside one."""
        depth = self.spool.depth()
        if depth >= self._max:
            self.make_room(depth)
        self.spool.add(
            report,
            now=self._clock.now(),
            state_before=state_before,
            state_after=state_after,
        )

    def make_room(self, depth: int) -> bool:
        """Fold the oldest never-sent reports so one more fits; ``False`` if nothing could."""
        needed = depth - self._max + 2
        size = max(needed, 2, self._max // _BATCH_DIVISOR)
        # Look a little past the batch: sent reports at the head are skipped, not folded.
        entries = self.spool.oldest(size + 16)
        known = [] if self._boundaries is None else self._boundaries.moments()
        run = compactable_run(entries, size, known)
        while len(run) >= 2:
            try:
                folded = compact_reports([e.report for e in run], self._catalogue, known)
            except NotCompactable as exc:
                log.warning("spool_compaction_refused", reason=str(exc), reports=len(run))
                run = run[:-1]
                continue
            self.spool.replace(run, folded, now=self._clock.now())
            self._metrics.compactions.inc()
            log.info(
                "spool_compacted",
                reports=len(run),
                report_id=str(folded.id),
                window_start=folded.window_start.isoformat(),
                window_end=folded.window_end.isoformat(),
            )
            return True
        self._metrics.spool_overflow.inc()
        log.error(
            "spool_over_limit",
            depth=depth,
            limit=self._max,
            reason="no adjacent never-sent reports in one billing period to compact; kept all",
        )
        return False

    def refresh_gauges(self, now: datetime | None = None) -> None:
        now = now or self._clock.now()
        self._metrics.spool_depth.set(self.spool.depth())
        self._metrics.dead_reports.set(self.spool.dead_count())
        oldest = self.spool.oldest_window_end()
        age = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
        self._metrics.oldest_unsent_age.set(age)
