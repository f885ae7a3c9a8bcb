"""One replica at a time runs the background tasks that must run once.

The reconciler, the ageing warnings and the forwarder's subscription reads each do the same
work whichever replica does it, so only the leader does them. Leadership is a lock in the
database (``collector.adapters.db.leadership``): every ``check`` seconds a follower tries to take
it and the leader confirms it still holds it. The leader's tasks start when it takes the lock and
are stopped when it loses it; a replica that dies loses it with its database session, and another
takes over at its next check.

Two leaders can overlap only while a leader cut off from the database has not noticed yet (at
most one check plus one statement timeout) and PostgreSQL has already ended its session (after
three idle checks). The tasks tolerate that: the reconciler stores each result with an upsert,
the ageing warnings only log and set this replica's gauges, and a subscription read applies
Stripe's answer idempotently.

Log events: ``leadership_acquired`` and ``leadership_lost`` (with the reason); the gauge
``usage_collector_leader`` is 1 on the leader. A replica that stops leading zeroes the gauges its
tasks set, so an alert on ``max`` over replicas reads the leader's values. ``status`` tells
operators the same through the API: whether this replica leads, since when, and what it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import structlog

from collector.telemetry import CollectorMetrics
from common.clock import Clock, SystemClock

log = structlog.get_logger("collector.leader")


class LeaderLock(Protocol):
    """The database's lock (``AdvisoryLeaderLock``), or one that always leads (SQLite)."""

    async def try_acquire(self) -> bool: ...

    async def confirm(self) -> bool: ...

    async def release(self) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class SingletonTask:
    """A loop that runs on the leader until its ``stop`` event is set."""

    name: str
    run: Callable[[asyncio.Event], Awaitable[None]]
    step_down: Callable[[], None] | None = None
    """Called when this replica stops leading: e.g. zero the gauges the task sets."""


@dataclass(frozen=True)
class LeaderStatus:
    """This replica's part in the election, as operators see it."""

    replica: str
    leading: bool
    since: datetime | None
    """When it took the lead, or began following (lost it, or first found it taken); None
    before its first election."""
    tasks: list[str]
    """The singleton tasks running here now: none unless it leads, and none that failed."""


class Leadership:
    """Elects through ``lock`` and runs ``tasks`` while this replica leads."""

    def __init__(
        self,
        lock: LeaderLock,
        metrics: CollectorMetrics,
        *,
        identity: str,
        check: float,
        tasks: Sequence[SingletonTask] = (),
        clock: Clock | None = None,
    ) -> None:
        if check <= 0:
            raise ValueError("the leader check interval must be positive")
        self._lock = lock
        self._metrics = metrics
        self._identity = identity
        self._check = check
        self._tasks = list(tasks)
        self._leading = False
        self._electing = False
        self._term: asyncio.Event | None = None
        self._running: dict[str, asyncio.Task[None]] = {}
        self._unreachable = False
        self._clock = clock or SystemClock()
        self._since: datetime | None = None
        metrics.leader.set(0)

    @property
    def tasks(self) -> list[str]:
        return [task.name for task in self._tasks]

    def runs_singletons(self) -> bool:
        """Whether work that must run once may run here: this replica leads, or no election
        runs at all (a process that never started ``run``: a command, a test harness)."""
        return self._leading or not self._electing

    def status(self) -> LeaderStatus:
        return LeaderStatus(
            replica=self._identity,
            leading=self._leading,
            since=self._since,
            tasks=[name for name, task in self._running.items() if not task.done()],
        )

    async def step(self) -> bool:
        """Try to lead, or confirm leading; start or stop the tasks. Whether this replica leads."""
        if self._leading:
            if not await self._lock.confirm():
                await self._step_down("lost its hold on the database")
            return self._leading
        try:
            taken = await self._lock.try_acquire()
        except Exception as exc:
            if not self._unreachable:
                log.warning(
                    "leader_election_failed",
                    identity=self._identity,
                    error=type(exc).__name__,
                    detail=str(exc)[:300],
                )
            self._unreachable = True
            return False
        self._unreachable = False
        if taken:
            self._take_over()
        elif self._since is None:
            self._since = self._clock.now()
        return self._leading

    async def run(self, stop: asyncio.Event) -> None:
        """Elect every ``check`` seconds until ``stop``; then stop the tasks and let go."""
        self._electing = True
        try:
            while not stop.is_set():
                await self.step()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self._check)
        finally:
            if self._leading:
                await self._step_down("stopping", warn=False)
            await self._lock.release()
            self._electing = False

    async def close(self) -> None:
        await self._lock.close()

    def _take_over(self) -> None:
        self._leading = True
        self._since = self._clock.now()
        self._term = asyncio.Event()
        self._metrics.leader.set(1)
        self._metrics.leadership_changes.labels("acquired").inc()
        log.info("leadership_acquired", identity=self._identity, tasks=self.tasks)
        for task in self._tasks:
            self._running[task.name] = asyncio.create_task(self._supervise(task, self._term))

    async def _step_down(self, reason: str, *, warn: bool = True) -> None:
        self._leading = False
        self._since = self._clock.now()
        self._metrics.leader.set(0)
        self._metrics.leadership_changes.labels("lost").inc()
        (log.warning if warn else log.info)(
            "leadership_lost", identity=self._identity, reason=reason, tasks=self.tasks
        )
        if self._term is not None:
            self._term.set()
        running, self._running = self._running, {}
        await asyncio.sleep(0)  # a task waiting on its stop event ends by itself
        for task in running.values():
            task.cancel()
        for task in running.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for singleton in self._tasks:
            if singleton.step_down is not None:
                singleton.step_down()
        await self._lock.release()

    async def _supervise(self, task: SingletonTask, term: asyncio.Event) -> None:
        try:
            await task.run(term)
        except Exception as exc:
            log.warning(
                "leader_task_failed", task=task.name, error=type(exc).__name__, detail=str(exc)
            )
