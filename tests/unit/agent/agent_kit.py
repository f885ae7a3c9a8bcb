"""A wired agent loop on a manual clock with fake sources and a fake collector, for unit tests."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry

from agent.adapters.boundary_state import SqliteBoundaryStore
from agent.adapters.collector_client import Accepted, Delivery
from agent.adapters.spool import Spool
from agent.adapters.state_db import StateDb
from agent.errors import CollectorUnavailable
from agent.loop import AgentLoop
from agent.services.backoff import RetryPolicy
from agent.services.boundaries import KnownBoundaries
from agent.services.catchup import CatchUp, ReportSource, Schedule
from agent.services.collect import CollectedReport
from agent.services.delivery import SpoolDelivery
from agent.services.spooling import ReportSpool
from agent.services.telemetry import AgentMetrics, Health
from common.billing_periods import PeriodBounds
from common.catalogue import MetricCatalogue
from common.clock import ManualClock
from common.schema import UsageReport
from common.windows import Window


def messages_in(window: Window) -> int:
    """Deterministic ground truth: a burst at each whole minute in ``(start, end]``, varying.

    Additive: the messages of two adjacent windows are those of their union, wherever they meet.
    """
    total = 0
    minute = window.start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while minute <= window.end:
        total += (int(minute.timestamp()) // 60 * 7919) % 97
        minute += timedelta(minutes=1)
    return total


class TruthSource:
    """Measures ``messages_in`` exactly and a device count; can fail for chosen windows."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.collected: list[tuple[Window, datetime]] = []
        self.failing: Callable[[Window], bool] = lambda window: False

    async def collect(self, window: Window) -> CollectedReport:
        self.collected.append((window, self.clock.now()))
        failed = self.failing(window)
        report = UsageReport(
            customer_id="c",
            instance_id="i",
            window_start=window.start,
            window_end=window.end,
            metrics={"devices": 3}
            if failed
            else {"devices": 3, "mqtt_messages": messages_in(window)},
            missing=["mqtt_messages"] if failed else [],
        )
        return CollectedReport(report)


@dataclass
class FakeCollector:
    """Stores each report id once, like the real collector; down while ``down`` says so.

    Every accepted answer names ``periods``, the customer's billing periods.
    """

    clock: ManualClock
    down: Callable[[datetime], bool] = lambda now: False
    stored: dict[str, UsageReport] = field(default_factory=dict)
    attempts: int = 0
    on_send: Callable[[FakeCollector], None] | None = None
    periods: tuple[PeriodBounds, ...] = ()

    async def send(self, report: UsageReport) -> Accepted:
        self.attempts += 1
        if self.on_send is not None:
            self.on_send(self)
        if self.down(self.clock.now()):
            raise CollectorUnavailable("down", status=503)
        if str(report.id) in self.stored:
            return Accepted(Delivery.DUPLICATE, self.periods)
        self.stored[str(report.id)] = report
        return Accepted(Delivery.CREATED, self.periods)

    def billed(self, metric: str) -> int:
        return sum(int(r.metrics.get(metric, 0)) for r in self.stored.values())

    def windows(self) -> list[tuple[datetime, datetime]]:
        return sorted((r.window_start, r.window_end) for r in self.stored.values())


@dataclass
class Agent:
    loop: AgentLoop
    db: StateDb
    spool: Spool
    metrics: AgentMetrics
    health: Health
    boundaries: KnownBoundaries


def make_agent(
    state_dir: Path,
    clock: ManualClock,
    source: ReportSource,
    sender: FakeCollector,
    *,
    interval: timedelta = timedelta(minutes=15),
    query_offset: timedelta = timedelta(seconds=30),
    max_reports: int = 1000,
    partial_after: timedelta = timedelta(hours=1),
    max_catchup: timedelta = timedelta(days=7),
    jitter: timedelta = timedelta(0),
    retry: RetryPolicy | None = None,
) -> Agent:
    db = StateDb.in_dir(state_dir)
    metrics = AgentMetrics(CollectorRegistry())
    health = Health(clock, interval)
    boundaries = KnownBoundaries(SqliteBoundaryStore(db), clock)
    spool = ReportSpool(
        Spool(db),
        max_reports=max_reports,
        catalogue=MetricCatalogue.default(),
        clock=clock,
        metrics=metrics,
        boundaries=boundaries,
    )
    schedule = Schedule(interval, query_offset, max_catchup, partial_after)
    catchup = CatchUp(
        source=source,
        db=db,
        spool=spool,
        clock=clock,
        schedule=schedule,
        metrics=metrics,
        boundaries=boundaries,
    )
    delivery = SpoolDelivery(
        spool=spool,
        sender=sender,
        clock=clock,
        metrics=metrics,
        health=health,
        retry=retry or RetryPolicy(initial=1.0, maximum=300.0),
        rng=random.Random(7),
        boundaries=boundaries,
    )
    loop = AgentLoop(
        catchup=catchup,
        delivery=delivery,
        clock=clock,
        schedule=schedule,
        jitter=jitter,
        rng=random.Random(11),
    )
    return Agent(loop, db, spool.spool, metrics, health, boundaries)


def stop_at(agent: Agent, clock: ManualClock, moment: datetime) -> None:
    """Stop the loop once the clock passes ``moment`` (checked at every sleep)."""
    previous = clock.sleep

    async def sleep(seconds: float) -> None:
        await previous(seconds)
        if clock.now() >= moment:
            agent.loop.stop()

    clock.sleep = sleep  # type: ignore[method-assign]
