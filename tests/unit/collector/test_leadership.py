"""Leadership: one replica runs the singleton tasks; when it loses its hold they stop, its gauges
return to zero, and another replica takes over. The lock is an in-memory stand-in for
PostgreSQL's advisory lock, shared by the replicas of one test."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from collector.errors import DatabaseUnavailable
from collector.services.leader import Leadership, LeaderStatus, SingletonTask
from collector.telemetry import CollectorMetrics
from common.clock import ManualClock

START = datetime(2026, 6, 1, 9, tzinfo=UTC)


class SharedLock:
    """One holder at a time; clearing ``holder`` is the database ending the holder's session."""

    def __init__(self) -> None:
        self.holder: str | None = None
        self.down = False

    def session(self, name: str) -> Session:
        return Session(self, name)


class Session:
    def __init__(self, shared: SharedLock, name: str) -> None:
        self.shared = shared
        self.name = name

    async def try_acquire(self) -> bool:
        if self.shared.down:
            raise DatabaseUnavailable("cannot reach database: connection refused")
        if self.shared.holder is None:
            self.shared.holder = self.name
        return self.shared.holder == self.name

    async def confirm(self) -> bool:
        return not self.shared.down and self.shared.holder == self.name

    async def release(self) -> None:
        if self.shared.holder == self.name:
            self.shared.holder = None

    async def close(self) -> None:
        await self.release()


class Recorder:
    """A singleton task that notes who runs it, and a step-down that notes who stopped."""

    def __init__(self) -> None:
        self.running: set[str] = set()
        self.stepped_down: list[str] = []
        self.started = asyncio.Event()

    def task(self, name: str) -> SingletonTask:
        async def run(stop: asyncio.Event) -> None:
            self.running.add(name)
            self.started.set()
            try:
                await stop.wait()
            finally:
                self.running.discard(name)

        return SingletonTask("recorder", run, lambda: self.stepped_down.append(name))


def replicas(
    lock: SharedLock, recorder: Recorder, count: int = 3
) -> list[tuple[Leadership, CollectorMetrics]]:
    made = []
    for n in range(count):
        name = f"replica-{n}"
        metrics = CollectorMetrics(CollectorRegistry())
        leadership = Leadership(
            lock.session(name), metrics, identity=name, check=1.0, tasks=[recorder.task(name)]
        )
        made.append((leadership, metrics))
    return made


def leader_gauge(metrics: CollectorMetrics) -> float | None:
    return metrics.registry.get_sample_value("usage_collector_leader")


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_one_replica_leads_and_runs_the_tasks() -> None:
    lock, recorder = SharedLock(), Recorder()
    group = replicas(lock, recorder)

    with capture_logs() as logs:
        leading = [await leadership.step() for leadership, _ in group]
        await settle()

    assert leading == [True, False, False]
    assert recorder.running == {"replica-0"}
    assert [leader_gauge(m) for _, m in group] == [1, 0, 0]
    assert [e["event"] for e in logs] == ["leadership_acquired"]


async def test_when_the_leader_loses_its_hold_its_tasks_stop_and_another_takes_over() -> None:
    lock, recorder = SharedLock(), Recorder()
    group = replicas(lock, recorder)
    for leadership, _ in group:
        await leadership.step()
    await settle()

    lock.holder = None  # the database ended the leader's session
    with capture_logs() as logs:
        assert await group[0][0].step() is False
        assert await group[1][0].step() is True
        await settle()

    assert recorder.running == {"replica-1"}
    assert recorder.stepped_down == ["replica-0"]
    assert [leader_gauge(m) for _, m in group] == [0, 1, 0]
    assert [e["event"] for e in logs] == ["leadership_lost", "leadership_acquired"]
    lost = group[0][1].registry.get_sample_value(
        "usage_collector_leadership_changes_total", {"event": "lost"}
    )
    assert lost == 1


async def test_an_unreachable_database_is_warned_about_once_and_nobody_leads() -> None:
    lock, recorder = SharedLock(), Recorder()
    lock.down = True
    (leadership, metrics), *_ = replicas(lock, recorder, count=1)

    with capture_logs() as logs:
        assert await leadership.step() is False
        assert await leadership.step() is False

    assert [e["event"] for e in logs] == ["leader_election_failed"]
    assert recorder.running == set()
    assert leader_gauge(metrics) == 0


async def test_run_lets_go_of_the_lock_when_stopped() -> None:
    lock, recorder = SharedLock(), Recorder()
    (leadership, _), *_ = replicas(lock, recorder, count=1)
    stop = asyncio.Event()
    running = asyncio.create_task(leadership.run(stop))
    await recorder.started.wait()

    stop.set()
    await asyncio.wait_for(running, timeout=10)

    assert lock.holder is None
    assert recorder.running == set()


async def test_only_the_leader_runs_singletons_once_an_election_runs() -> None:
    lock, recorder = SharedLock(), Recorder()
    (first, _), (second, _) = replicas(lock, recorder, count=2)
    assert second.runs_singletons()  # no election: a command or a harness does the work itself

    stop = asyncio.Event()
    running = [asyncio.create_task(r.run(stop)) for r in (first, second)]
    await recorder.started.wait()
    await settle()

    assert [first.runs_singletons(), second.runs_singletons()] == [True, False]
    stop.set()
    await asyncio.wait_for(asyncio.gather(*running), timeout=10)


async def test_status_shows_who_leads_since_when_and_what_runs_there() -> None:
    lock, recorder = SharedLock(), Recorder()
    clock = ManualClock(START)
    first, second = (
        Leadership(
            lock.session(name),
            CollectorMetrics(CollectorRegistry()),
            identity=name,
            check=1.0,
            tasks=[recorder.task(name)],
            clock=clock,
        )
        for name in ("replica-0", "replica-1")
    )
    assert first.status() == LeaderStatus("replica-0", leading=False, since=None, tasks=[])

    await first.step()
    clock.advance(30)
    await second.step()
    await settle()

    assert first.status() == LeaderStatus("replica-0", True, START, ["recorder"])
    assert second.status() == LeaderStatus("replica-1", False, START + timedelta(seconds=30), [])

    clock.advance(30)
    lock.holder = None
    await first.step()
    await second.step()
    await settle()

    lost_at = START + timedelta(seconds=60)
    assert first.status() == LeaderStatus("replica-0", False, lost_at, [])
    assert second.status() == LeaderStatus("replica-1", True, lost_at, ["recorder"])


async def test_status_leaves_out_a_task_that_failed() -> None:
    async def broken(stop: asyncio.Event) -> None:
        raise RuntimeError("the reconciler could not start")

    async def steady(stop: asyncio.Event) -> None:
        await stop.wait()

    leadership = Leadership(
        SharedLock().session("replica-0"),
        CollectorMetrics(CollectorRegistry()),
        identity="replica-0",
        check=1.0,
        tasks=[SingletonTask("reconciler", broken), SingletonTask("ageing", steady)],
        clock=ManualClock(START),
    )
    with capture_logs() as logs:
        await leadership.step()
        await settle()

    assert leadership.status().tasks == ["ageing"]
    assert [e["task"] for e in logs if e["event"] == "leader_task_failed"] == ["reconciler"]
