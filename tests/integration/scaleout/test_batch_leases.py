"""Batch leases between replicas, on real databases, with time on a manual clock.

Two forwarders, each with its own owner name, share one database: two replicas. Stripe is an
in-process sender that acts on a call when it arrives (as Stripe does), holds the answer until
the test lets it go, and logs when each identifier was in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from collector.adapters.db.migrate import upgrade_async
from collector.adapters.db.outbox import OutboxStore
from collector.adapters.stripe.client import Delivered, OutgoingEvent
from collector.api.app import Services, build_services
from collector.errors import DatabaseUnavailable
from collector.services.forwarder import Forwarder, ForwarderConfig
from collector.settings import CollectorSettings
from collector.telemetry import CollectorMetrics
from common.clock import ManualClock
from common.schema import UsageReport

NOW = datetime(2026, 6, 20, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=15)
RENEWAL = timedelta(seconds=5)


@dataclass
class Flight:
    """One call as Stripe saw it: which identifier, from when until when (monotonic)."""

    identifier: str
    start: float
    end: float | None = None
    outcome: str = "in flight"


class HeldStripe:
    """Keeps one event per identifier, acting on arrival; answers wait while ``hold`` is on."""

    mode = "meter_events"
    max_events = 1

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.events: dict[str, OutgoingEvent] = {}
        self.flights: list[Flight] = []
        self.hold = False
        self.arrived = asyncio.Event()
        self.answer = asyncio.Event()

    async def send(self, events: Sequence[OutgoingEvent]) -> list[Delivered | Exception]:
        (event,) = events
        flight = Flight(event.identifier, self.clock.monotonic())
        self.flights.append(flight)
        duplicate = event.identifier in self.events
        self.events.setdefault(event.identifier, event)
        self.arrived.set()
        try:
            if self.hold:
                await self.answer.wait()
        except asyncio.CancelledError:
            flight.end, flight.outcome = self.clock.monotonic(), "cancelled"
            raise
        flight.end, flight.outcome = self.clock.monotonic(), "answered"
        return [Delivered(400 if duplicate else 200, duplicate=duplicate)]


class UnreachableRenewals(OutboxStore):
    """The outbox of a replica whose database stops answering once its batch is claimed."""

    async def renew_leases(
        self, owner: str, ids: Collection[int], now: datetime, lease: timedelta
    ) -> set[int]:
        raise DatabaseUnavailable("cannot reach database: connection refused")


@dataclass
class World:
    services: Services
    clock: ManualClock
    stripe: HeldStripe
    settings: CollectorSettings

    def replica(
        self,
        owner: str,
        outbox: OutboxStore | None = None,
        metrics: CollectorMetrics | None = None,
    ) -> Forwarder:
        config = ForwarderConfig(
            mode="meter_events", max_rps=1000, lease=LEASE, lease_renewal=RENEWAL
        )
        return Forwarder(
            outbox or self.services.outbox,
            self.services.links,
            self.stripe,
            self.settings.catalogue(),
            self.clock,
            metrics or CollectorMetrics(CollectorRegistry()),
            config,
            owner=owner,
        )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'usage.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    settings = CollectorSettings(database_url=database_url, stripe_mode="off")
    await upgrade_async(settings.async_database_url())
    clock = ManualClock(NOW)
    services = build_services(settings, clock=clock, registry=CollectorRegistry())
    await services.links.link("cust_1", "cus_A", NOW, subscription_status="none")
    end = NOW.replace(hour=1)
    await services.ingest.store(
        UsageReport(
            customer_id="cust_1",
            instance_id="i",
            window_start=end - timedelta(hours=1),
            window_end=end,
            metrics={"mqtt_messages": 42},
        )
    )
    try:
        yield World(services, clock, HeldStripe(clock), settings)
    finally:
        await services.close()


async def sent_once(world: World) -> str:
    """The one batch is sent, and Stripe holds its event once; its identifier."""
    (batch,) = await world.services.outbox.batches()
    assert batch.state == "sent"
    assert list(world.stripe.events) == [batch.identifier]
    assert world.stripe.events[batch.identifier].quantity == 42
    return batch.identifier


def assert_never_twice_at_once(flights: list[Flight]) -> None:
    for i, one in enumerate(flights):
        for other in flights[i + 1 :]:
            if one.identifier != other.identifier:
                continue
            first, second = sorted((one, other), key=lambda f: f.start)
            assert first.end is not None, (first, second)
            assert first.end <= second.start, (first, second)


async def test_a_call_slower_than_the_lease_keeps_its_batch_while_renewed(world: World) -> None:
    a, b = world.replica("replica-a"), world.replica("replica-b")
    assert await a.form_batches() == 1
    world.stripe.hold = True
    sending = asyncio.create_task(a.deliver_due())
    await world.stripe.arrived.wait()

    for _ in range(6):  # 30 s in flight: twice the lease
        world.clock.advance(RENEWAL)
        await a.leases.renew()
        assert a.leases.expire() == []
        assert await b.deliver_due() == 0

    world.stripe.answer.set()
    assert await sending == 1
    identifier = await sent_once(world)
    assert [f.identifier for f in world.stripe.flights] == [identifier]


async def test_a_replica_that_cannot_renew_gives_its_call_up_before_the_lease_lapses(
    world: World,
) -> None:
    metrics = CollectorMetrics(CollectorRegistry())
    a = world.replica("replica-a", UnreachableRenewals(world.services.engine), metrics)
    b = world.replica("replica-b")
    assert await a.form_batches() == 1
    world.stripe.hold = True
    sending = asyncio.create_task(a.deliver_due())
    await world.stripe.arrived.wait()

    world.clock.advance(RENEWAL)
    await a.leases.renew()
    assert a.leases.expire() == []
    world.clock.advance(LEASE - RENEWAL * 2)
    await a.leases.renew()
    assert len(a.leases.expire()) == 1
    assert await sending == 1
    given_up = world.stripe.flights[0]
    assert given_up.outcome == "cancelled"
    assert given_up.end == (LEASE - RENEWAL).total_seconds()
    assert await b.deliver_due() == 0  # the lease has not lapsed yet

    world.clock.advance(RENEWAL + timedelta(seconds=1))
    world.stripe.hold = False
    assert await b.deliver_due() == 1

    identifier = await sent_once(world)
    assert [f.identifier for f in world.stripe.flights] == [identifier, identifier]
    assert_never_twice_at_once(world.stripe.flights)
    lost = metrics.registry.get_sample_value("usage_collector_batch_leases_lost_total")
    assert lost == 1


async def test_a_resend_after_a_replica_died_mid_call_carries_the_same_identifier(
    world: World,
) -> None:
    a, b = world.replica("replica-a"), world.replica("replica-b")
    assert await a.form_batches() == 1
    world.stripe.hold = True
    sending = asyncio.create_task(a.deliver_due())
    await world.stripe.arrived.wait()
    sending.cancel()  # the process dies: Stripe acted on the call, nobody settles it
    await asyncio.wait({sending})

    world.clock.advance(LEASE - timedelta(seconds=1))
    assert await b.deliver_due() == 0
    world.clock.advance(timedelta(seconds=2))
    world.stripe.hold = False
    assert await b.deliver_due() == 1

    identifier = await sent_once(world)
    assert [f.identifier for f in world.stripe.flights] == [identifier, identifier]


async def test_a_relink_completes_a_batch_a_dead_worker_claimed_instead_of_dissolving_it(
    world: World,
) -> None:
    a = world.replica("replica-a")
    assert await a.form_batches() == 1
    (claimed,) = await world.services.outbox.claim_due("dead-worker", NOW, LEASE, 10)
    world.clock.advance(LEASE * 2)
    if world.settings.is_sqlite:
        await world.services.outbox.release_leases()  # what a restart on SQLite does

    await world.services.links.link(
        "cust_1", "cus_B", world.clock.now(), subscription_status="none"
    )

    (kept,) = [b for b in await world.services.outbox.batches() if b.id == claimed.id]
    assert kept.state == "pending"
    await a.drain()
    identifier = await sent_once(world)
    assert identifier == claimed.identifier
    assert world.stripe.events[identifier].stripe_customer_id == "cus_A"


@pytest.mark.postgres
async def test_leases_on_postgresql_follow_the_database_clock(postgres_url: str) -> None:
    settings = CollectorSettings(database_url=postgres_url, stripe_mode="off")
    await upgrade_async(settings.async_database_url())
    clock = ManualClock(datetime.now(UTC))
    services = build_services(settings, clock=clock, registry=CollectorRegistry())
    try:
        await services.links.link("cust_1", "cus_A", clock.now(), subscription_status="none")
        end = clock.now().replace(minute=0, second=0, microsecond=0)
        await services.ingest.store(
            UsageReport(
                customer_id="cust_1",
                instance_id="i",
                window_start=end - timedelta(hours=1),
                window_end=end,
                metrics={"mqtt_messages": 1},
            )
        )
        forwarder = World(services, clock, HeldStripe(clock), settings).replica("former")
        assert await forwarder.form_batches() == 1
        replicas = [OutboxStore(services.engine, database_clock=True) for _ in range(2)]
        # A replica whose own clock runs a day ahead still sees the lease held.
        ahead = datetime.now(UTC) + timedelta(days=1)
        (claimed,) = await replicas[0].claim_due("replica-a", ahead, LEASE, 10)
        assert claimed.lease_until is not None
        assert claimed.lease_until < datetime.now(UTC) + LEASE + timedelta(seconds=5)
        assert await replicas[1].claim_due("replica-b", ahead, LEASE, 10) == []
        assert await replicas[1].renew_leases("replica-b", [claimed.id], ahead, LEASE) == set()
        assert await replicas[0].renew_leases("replica-a", [claimed.id], ahead, LEASE) == {
            claimed.id
        }
    finally:
        await services.close()
