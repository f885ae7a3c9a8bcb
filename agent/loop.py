"""The agent's schedule: catch up on due windows into the spool, then drain the spool.

Windows are aligned to the interval. A window is collected once its end plus the query offset
plus a random jitter (up to ``AGENT_JITTER``) has passed, so thousands of clusters do not query
and send in the same second. A window cut at a billing-period boundary has a piece ending at
the boundary, and the loop wakes for that end like for any other. Each cycle first collects
every due window since the watermark (see ``services.catchup``), then sends the spool oldest
first (``services.delivery``); failed sends wake the loop again at their backoff time. With
leader election only the Lease holder runs cycles, and the Lease is renewed by a task of its
own so a long catch-up cannot lose it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from agent.errors import CollectorRejected
from agent.services.backoff import RetryPolicy
from agent.services.catchup import CatchUp, CatchUpResult, Schedule
from agent.services.delivery import FlushResult, SpoolDelivery
from agent.services.leader import LeaderElector
from common.clock import Clock
from common.errors import MeteringError

__all__ = ["AgentLoop", "OnceResult", "RetryPolicy"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class OnceResult:
    """What ``run --once`` achieved: accepted only when nothing due was left unsent."""

    accepted: bool
    reason: str


class AgentLoop:
    """Runs cycles on an injected clock until ``stop`` is called."""

    def __init__(
        self,
        *,
        catchup: CatchUp,
        delivery: SpoolDelivery,
        clock: Clock,
        schedule: Schedule,
        jitter: timedelta = timedelta(0),
        rng: random.Random | None = None,
        elector: LeaderElector | None = None,
        renew_period: timedelta = timedelta(seconds=5),
        startup: Sequence[Callable[[], Awaitable[object]]] = (),
    ) -> None:
        self.catchup = catchup
        self.delivery = delivery
        self.elector = elector
        self._clock = clock
        self._schedule = schedule
        self._jitter = jitter
        self._rng = rng or random.Random()
        self._renew = renew_period
        self._startup = tuple(startup)
        self._stop = asyncio.Event()
        self._jitter_for: dict[datetime, timedelta] = {}
        if elector is not None:
            delivery.before_send = elector.publish_in_flight

    def stop(self) -> None:
        """Finish the step in progress, then return; every report is already in the spool."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def leading(self) -> bool:
        return self.elector is None or self.elector.is_leader

    async def start(self) -> None:
        """Run start-up hooks (e.g. take scrape baselines); a failing hook is logged, not fatal."""
        for hook in self._startup:
            try:
                await hook()
            except MeteringError as exc:
                log.warning("startup_step_failed", error=str(exc))

    async def cycle(self) -> tuple[CatchUpResult | None, FlushResult | None]:
        """Collect due windows into the spool, then send it; nothing when not the leader."""
        if not self.leading:
            return None, None
        caught = await self.catchup.run(stopping=lambda: self.stopping)
        if not self.leading:
            return caught, FlushResult.NOT_LEADER
        flushed = await self.delivery.flush(stopping=lambda: self.stopping)
        return caught, flushed

    async def run_once(self, *, attempts: int) -> OnceResult:
        """Collect the last complete window (and any missed ones), send the spool, exit.

        Accepted when every report spooled was accepted and no due window was left uncollected.
        A refusal that resending cannot fix (401, 403, 404) stops at the first attempt.
        """
        await self.start()
        if self.elector is not None and not await self.elector.step():
            log.info("not_leader", identity=self.elector.identity, action="nothing sent")
            return OnceResult(True, "not the leader: another agent reports")
        self.catchup.ensure_watermark(backlog=1)
        caught = await self.catchup.run()
        spool = self.delivery.spool
        dead_before = spool.dead_count()
        failures = 0
        force = True
        while True:
            result = await self.delivery.flush(force=force)
            force = False
            if result in (FlushResult.EMPTY, FlushResult.NOT_LEADER):
                break
            if result is FlushResult.FAILED:
                failures += 1
                if failures >= attempts or isinstance(self.delivery.last_error, CollectorRejected):
                    break
            next_at = self.delivery.next_attempt_at()
            if next_at is None or not await self._sleep_until(next_at):
                break
        outcome = self._once_outcome(caught, dead_before, failures)
        if not outcome.accepted:
            log.error(
                "reports_not_delivered",
                waiting=spool.depth(),
                attempts=failures,
                reason=outcome.reason,
            )
        return outcome

    def _once_outcome(self, caught: CatchUpResult, dead_before: int, failures: int) -> OnceResult:
        spool = self.delivery.spool
        waiting = spool.depth()
        if waiting:
            error = self.delivery.last_error
            why = str(error) if error is not None else "not sent"
            return OnceResult(
                False, f"{waiting} report(s) not accepted after {failures} attempt(s): {why}"
            )
        dead = spool.dead_count() - dead_before
        if dead:
            return OnceResult(
                False,
                f"{dead} report(s) refused by the collector as invalid or conflicting; kept in "
                "the state's dead reports (see report_rejected_kept / report_conflict_kept)",
            )
        if caught.deferred is not None:
            errors = "; ".join(caught.errors) or "no reason given"
            return OnceResult(
                False,
                f"window {caught.deferred} not collected, {', '.join(caught.missing)} could not "
                f"be measured ({errors}); {caught.retry_rule}",
            )
        if caught.collected == 0:
            return OnceResult(True, "nothing due: every complete window is already reported")
        return OnceResult(True, f"{caught.collected} report(s) accepted")

    async def run(self) -> None:
        """Report every window until stopped; on a first start, from the window in progress."""
        await self.start()
        self.catchup.ensure_watermark(backlog=0)
        renewer = None
        if self.elector is not None:
            await self.elector.step()
            renewer = asyncio.ensure_future(self._renew_lease(self.elector))
        try:
            while not self.stopping:
                try:
                    await self.cycle()
                except Exception:
                    # Months unattended: a bug in one cycle is logged and the next still runs.
                    log.exception("cycle_failed")
                if not await self._sleep_until(self._next_wake()):
                    break
        finally:
            if renewer is not None:
                renewer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewer
            if self.elector is not None:
                await self.elector.release()

    def _next_wake(self) -> datetime:
        now = self._clock.now()
        next_end = self.catchup.next_end(now)
        if next_end not in self._jitter_for:
            self._jitter_for = {next_end: self._sample_jitter()}
        wake = next_end + self._schedule.query_offset + self._jitter_for[next_end]
        retry = self.delivery.next_attempt_at()
        if retry is not None and self.leading:
            wake = min(wake, max(retry, now))
        if self.elector is not None:
            wake = min(wake, now + self._renew)
        return wake

    def _sample_jitter(self) -> timedelta:
        if self._jitter <= timedelta(0):
            return timedelta(0)
        return timedelta(seconds=self._rng.uniform(0, self._jitter.total_seconds()))

    async def _renew_lease(self, elector: LeaderElector) -> None:
        while True:
            await self._clock.sleep(self._renew.total_seconds())
            await elector.step()

    async def _sleep_until(self, moment: datetime) -> bool:
        return await self._sleep((moment - self._clock.now()).total_seconds())

    async def _sleep(self, seconds: float) -> bool:
        """Wait on the clock; ``False`` if stopped first."""
        if self.stopping:
            return False
        if seconds <= 0:
            await asyncio.sleep(0)
            return True
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        stopper = asyncio.ensure_future(self._stop.wait())
        _, pending = await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return not self.stopping
