"""Sending the spool to the collector: oldest window first, one report at a time.

Each attempt is recorded in the spool *before* the report goes out, with the time the next
attempt may follow (capped exponential backoff with jitter, or ``Retry-After`` if longer). A
report leaves the spool only after a 2xx answer; a 200 for a duplicate ``report_id`` counts.
A 409 means the collector already bills this window under the same id with other content, so
resending can never help: the report is kept in ``dead_reports`` and not sent again, like a
report the collector found invalid (400/413/422). Any other refusal (401, 403, 404...) is a
configuration problem an operator can fix, so the report waits at the longest backoff and
``last_error`` keeps the refusal (``run --once`` stops at it instead of retrying).

An accepted answer may name the customer's billing periods; their boundaries are remembered
(``services.boundaries``) for the windows collected and the reports compacted from then on.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from agent.adapters.collector_client import Accepted
from agent.adapters.spool import Spool, SpoolEntry
from agent.errors import CollectorConflict, CollectorRejected
from agent.services.backoff import RetryPolicy
from agent.services.boundaries import KnownBoundaries
from agent.services.spooling import ReportSpool
from agent.services.telemetry import AgentMetrics, Health
from common.clock import Clock
from common.errors import MeteringError
from common.schema import UsageReport

log = structlog.get_logger(__name__)

_INVALID = {400, 413, 422}


class ReportSender(Protocol):
    async def send(self, report: UsageReport) -> Accepted: ...


class FlushResult(enum.Enum):
    """Why a flush stopped."""

    EMPTY = "empty"
    WAITING = "waiting"  # the oldest report's next attempt is in the future
    FAILED = "failed"  # this attempt failed; the next one is scheduled
    NOT_LEADER = "not_leader"


BeforeSend = Callable[[SpoolEntry], Awaitable[bool]]
CrashPoint = Callable[[str], None]


def _no_crash(point: str) -> None:
    return None


class SpoolDelivery:
    """Drains the spool into the collector."""

    def __init__(
        self,
        *,
        spool: ReportSpool,
        sender: ReportSender,
        clock: Clock,
        metrics: AgentMetrics,
        health: Health,
        retry: RetryPolicy,
        rng: random.Random,
        before_send: BeforeSend | None = None,
        crash_point: CrashPoint = _no_crash,
        boundaries: KnownBoundaries | None = None,
    ) -> None:
        self._spool = spool
        self._sender = sender
        self._clock = clock
        self._metrics = metrics
        self._health = health
        self._retry = retry
        self._rng = rng
        self.before_send = before_send
        self._crash = crash_point
        self._boundaries = boundaries
        self.last_error: MeteringError | None = None

    @property
    def spool(self) -> Spool:
        return self._spool.spool

    def next_attempt_at(self) -> datetime | None:
        head = self._spool.spool.head()
        return None if head is None else head.next_attempt_at

    async def flush(
        self, *, stopping: Callable[[], bool] = lambda: False, force: bool = False
    ) -> FlushResult:
        """Send waiting reports, oldest first, until the spool is empty or one cannot go now.

        ``force`` ignores the backoff schedule (``run --once`` tries at once).
        """
        spool = self._spool.spool
        try:
            while not stopping():
                entry = spool.head()
                if entry is None:
                    return FlushResult.EMPTY
                now = self._clock.now()
                if not force and entry.next_attempt_at > now:
                    return FlushResult.WAITING
                if self.before_send is not None and not await self.before_send(entry):
                    return FlushResult.NOT_LEADER
                if not await self._attempt(entry, now):
                    return FlushResult.FAILED
            return FlushResult.WAITING
        finally:
            self._spool.refresh_gauges()

    async def _attempt(self, entry: SpoolEntry, now: datetime) -> bool:
        spool = self._spool.spool
        report = entry.report
        attempt = entry.attempts + 1
        delay = self._retry.delay(attempt, self._rng)
        spool.mark_attempt(entry.seq, now + timedelta(seconds=delay))
        try:
            accepted = await self._sender.send(report)
        except MeteringError as exc:
            self.last_error = exc
            return self._failed(entry, exc, now, delay, attempt)
        self.last_error = None
        self._accepted(entry, accepted)
        return True

    def _failed(
        self, entry: SpoolEntry, error: MeteringError, now: datetime, delay: float, attempt: int
    ) -> bool:
        """Record a failed send; ``True`` when the report left the head of the spool for good."""
        spool = self._spool.spool
        report = entry.report
        if isinstance(error, CollectorConflict):
            self._metrics.reports_sent.labels("conflict").inc()
            log.error("report_conflict_kept", report_id=str(report.id), error=str(error))
            spool.bury(entry, reason="conflict", status=error.status, now=self._clock.now())
            return True
        if isinstance(error, CollectorRejected):
            self._metrics.send_failures.labels(str(error.status)).inc()
            if error.status in _INVALID:
                self._metrics.reports_sent.labels("rejected").inc()
                log.error("report_rejected_kept", report_id=str(report.id), error=str(error))
                spool.bury(entry, reason="rejected", status=error.status, now=self._clock.now())
                return True
            retry_at = self._clock.now() + timedelta(seconds=self._retry.maximum)
            spool.reschedule(entry.seq, retry_at)
            log.error(
                "report_refused",
                report_id=str(report.id),
                status=error.status,
                error=str(error),
                retry_at=str(retry_at),
            )
            return False
        status = getattr(error, "status", None)
        self._metrics.send_failures.labels(str(status) if status else "network").inc()
        retry_after = getattr(error, "retry_after", None) or 0.0
        wait = max(delay, retry_after)
        if retry_after > delay:
            spool.reschedule(entry.seq, now + timedelta(seconds=wait))
        log.warning(
            "report_send_failed",
            report_id=str(report.id),
            attempt=attempt,
            error=str(error),
            retry_in=round(wait, 3),
        )
        return False

    def _accepted(self, entry: SpoolEntry, accepted: Accepted) -> None:
        report = entry.report
        self._crash("after_send")
        self._spool.spool.remove(entry.seq)
        if self._boundaries is not None and accepted.periods:
            self._boundaries.learn(accepted.periods)
        delivery = accepted.delivery
        sent_at = self._clock.now()
        self._metrics.reports_sent.labels(delivery.value).inc()
        self._metrics.last_send.set(sent_at.timestamp())
        self._health.sent(sent_at)
        log.info(
            "report_sent",
            report_id=str(report.id),
            window_start=report.window_start.isoformat(),
            window_end=report.window_end.isoformat(),
            delivery=delivery.value,
            partial=report.partial,
            windows=entry.windows,
        )
