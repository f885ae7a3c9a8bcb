"""The agent's schedule: one report per interval-aligned window, sent with capped backoff.

Each window is collected once its end plus the query offset has passed (so Prometheus has the
last scrape), then sent. Transient failures are retried with capped exponential backoff and
jitter, honouring ``Retry-After``, until the next window is due; a permanent rejection is logged
and not retried. Issue 4 puts a durable spool between collection and sending.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from agent.adapters.collector_client import Delivery
from agent.errors import StateError
from agent.services.collect import CollectedReport
from common.clock import Clock
from common.errors import MeteringError, PermanentError
from common.schema import UsageReport
from common.windows import Window, last_complete_window

log = structlog.get_logger(__name__)


class ReportSource(Protocol):
    async def collect(self, window: Window) -> CollectedReport: ...


class ReportSender(Protocol):
    async def send(self, report: UsageReport) -> Delivery: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with jitter: attempt n waits d/2..d, d = initial * 2^(n-1)."""

    initial: float = 1.0
    maximum: float = 300.0
    multiplier: float = 2.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        base = min(self.maximum, self.initial * self.multiplier ** max(0, attempt - 1))
        return rng.uniform(base / 2, base)


class AgentLoop:
    """Collects and sends windows on an injected clock until ``stop`` is called."""

    def __init__(
        self,
        *,
        source: ReportSource,
        sender: ReportSender,
        clock: Clock,
        interval: timedelta,
        query_offset: timedelta,
        retry: RetryPolicy | None = None,
        rng: random.Random | None = None,
        startup: Sequence[Callable[[], Awaitable[object]]] = (),
    ) -> None:
        self._source = source
        self._sender = sender
        self._clock = clock
        self._interval = interval
        self._offset = query_offset
        self._retry = retry or RetryPolicy()
        self._rng = rng or random.Random()
        self._startup = tuple(startup)
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """Ask the loop to finish: waits end at once, an in-flight send is not retried."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def due_window(self) -> Window:
        """The newest window whose end plus the query offset has passed."""
        return last_complete_window(self._clock.now() - self._offset, self._interval)

    async def start(self) -> None:
        """Run start-up hooks (e.g. take scrape baselines); a failing hook is logged, not fatal."""
        for hook in self._startup:
            try:
                await hook()
            except MeteringError as exc:
                log.warning("startup_step_failed", error=str(exc))

    async def run_once(self, *, attempts: int) -> bool:
        """Collect and send the last complete window; ``True`` if the collector accepted it."""
        await self.start()
        return await self._cycle(self.due_window(), attempts=attempts, deadline=None)

    async def run(self) -> None:
        """Send one report per window until stopped; the first is the window now in progress."""
        await self.start()
        window = self.due_window()
        while True:
            window = Window(window.end, window.end + self._interval)
            due = window.end + self._offset
            if not await self._sleep_until(due):
                return
            try:
                await self._cycle(window, attempts=None, deadline=due + self._interval)
            except Exception:
                # Months unattended: a bug in one cycle is logged and the next window still runs.
                log.exception("cycle_failed", window=str(window))
            if self.stopping:
                return

    async def _cycle(
        self, window: Window, *, attempts: int | None, deadline: datetime | None
    ) -> bool:
        collected = await self._source.collect(window)
        accepted = await self._deliver(collected.report, attempts=attempts, deadline=deadline)
        if accepted:
            try:
                collected.commit()
            except StateError as exc:
                log.error("state_commit_failed", report_id=str(collected.report.id), error=str(exc))
        return accepted

    async def _deliver(
        self, report: UsageReport, *, attempts: int | None, deadline: datetime | None
    ) -> bool:
        attempt = 0
        while True:
            attempt += 1
            try:
                delivery = await self._sender.send(report)
            except PermanentError as exc:
                log.error("report_rejected", report_id=str(report.id), error=str(exc))
                return False
            except MeteringError as exc:
                delay = max(
                    self._retry.delay(attempt, self._rng), getattr(exc, "retry_after", 0) or 0
                )
                give_up = (attempts is not None and attempt >= attempts) or (
                    deadline is not None and self._clock.now() + timedelta(seconds=delay) > deadline
                )
                log.warning(
                    "report_send_failed",
                    report_id=str(report.id),
                    attempt=attempt,
                    error=str(exc),
                    retry_in=None if give_up else round(delay, 3),
                )
                if give_up or not await self._sleep(delay):
                    log.error("report_not_delivered", report_id=str(report.id), attempts=attempt)
                    return False
                continue
            log.info(
                "report_sent",
                report_id=str(report.id),
                window_start=report.window_start.isoformat(),
                window_end=report.window_end.isoformat(),
                delivery=delivery.value,
                partial=report.partial,
            )
            return True

    async def _sleep_until(self, moment: datetime) -> bool:
        return await self._sleep((moment - self._clock.now()).total_seconds())

    async def _sleep(self, seconds: float) -> bool:
        """Wait on the clock; ``False`` if stopped first."""
        if self.stopping:
            return False
        if seconds <= 0:
            return True
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        stopper = asyncio.ensure_future(self._stop.wait())
        _, pending = await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return not self.stopping
