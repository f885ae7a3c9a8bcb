"""The lease keeper: renewals move deadlines, a missed renewal loses the batch in time, and a lost
batch's call is cancelled. Time is a manual clock; the store is an in-memory lease table."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from datetime import UTC, datetime, timedelta

import pytest

from collector.errors import DatabaseUnavailable
from collector.services.leases import LeaseKeeper
from common.clock import ManualClock

LEASE = 15.0
RENEW = 5.0


class LeaseTable:
    """Leases as the outbox keeps them: owner and end per batch; ``down`` fails every call."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.owner: dict[int, str] = {}
        self.until: dict[int, float] = {}
        self.down = False
        self.renewals = 0
        self.renewed = asyncio.Event()

    def claim(self, owner: str, ids: Collection[int]) -> None:
        for batch_id in ids:
            self.owner[batch_id] = owner
            self.until[batch_id] = self.clock.monotonic() + LEASE

    async def renew_leases(
        self, owner: str, ids: Collection[int], now: datetime, lease: timedelta
    ) -> set[int]:
        self.renewals += 1
        self.renewed.set()
        if self.down:
            raise DatabaseUnavailable("cannot reach database: connection refused")
        kept = {i for i in ids if self.owner.get(i) == owner}
        for batch_id in kept:
            self.until[batch_id] = self.clock.monotonic() + lease.total_seconds()
        return kept


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 1, 1, tzinfo=UTC))


@pytest.fixture
def table(clock: ManualClock) -> LeaseTable:
    return LeaseTable(clock)


def keeper(table: LeaseTable, clock: ManualClock, owner: str = "a") -> LeaseKeeper:
    return LeaseKeeper(table, owner, clock, lease=LEASE, renew_every=RENEW)


def test_renewal_must_fit_twice_in_the_lease(table: LeaseTable, clock: ManualClock) -> None:
    with pytest.raises(ValueError, match="half the lease"):
        LeaseKeeper(table, "a", clock, lease=10.0, renew_every=6.0)


async def test_renewed_batches_are_kept_past_their_first_lease(
    table: LeaseTable, clock: ManualClock
) -> None:
    leases = keeper(table, clock)
    table.claim("a", [1, 2])
    leases.hold([1, 2], since=clock.monotonic())
    for _ in range(10):
        clock.advance(RENEW)
        await leases.renew()
        assert leases.expire() == []
    assert leases.kept([1, 2])
    assert table.until[1] > clock.monotonic()


async def test_a_batch_is_given_up_a_renewal_before_its_lease_could_lapse(
    table: LeaseTable, clock: ManualClock
) -> None:
    leases = keeper(table, clock)
    table.claim("a", [1])
    leases.hold([1], since=clock.monotonic())
    clock.advance(RENEW)
    await leases.renew()
    table.down = True
    clock.advance(RENEW)
    await leases.renew()
    clock.advance(RENEW - 0.25)
    await leases.renew()
    assert leases.expire() == []

    clock.advance(0.25)

    assert leases.expire() == [1]
    assert not leases.kept([1])
    assert table.until[1] - clock.monotonic() == pytest.approx(leases.margin)


async def test_a_batch_another_worker_took_is_lost_at_the_next_renewal(
    table: LeaseTable, clock: ManualClock
) -> None:
    leases = keeper(table, clock)
    table.claim("a", [1, 2])
    leases.hold([1, 2], since=clock.monotonic())
    table.claim("b", [2])

    await leases.renew()

    assert leases.kept([1])
    assert not leases.kept([2])


async def test_a_settled_batch_released_during_a_renewal_is_not_reported_lost(
    table: LeaseTable, clock: ManualClock
) -> None:
    leases = keeper(table, clock)
    table.claim("a", [1])
    leases.hold([1], since=clock.monotonic())
    del table.owner[1]  # settled: the lease is cleared
    leases.release([1])
    leases.hold([1], since=clock.monotonic())  # claimed again after a retry
    table.claim("a", [1])

    await leases.renew()

    assert leases.kept([1])


async def test_guard_cancels_the_call_when_its_lease_is_lost(
    table: LeaseTable, clock: ManualClock
) -> None:
    leases = keeper(table, clock)
    table.claim("a", [1])
    leases.hold([1], since=clock.monotonic())
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def slow_call() -> str:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "answered"

    guarded = asyncio.create_task(leases.guard([1], slow_call()))
    await started.wait()
    table.claim("b", [1])
    await leases.renew()

    assert await guarded is None
    assert cancelled.is_set()


async def test_guard_returns_the_answer_of_a_call_whose_lease_holds(
    table: LeaseTable, clock: ManualClock
) -> None:
    leases = keeper(table, clock)
    table.claim("a", [1])
    leases.hold([1], since=clock.monotonic())

    async def call() -> str:
        await asyncio.sleep(0)
        return "answered"

    assert await leases.guard([1], call()) == "answered"


async def test_run_renews_held_batches_and_stops_with_stop(
    table: LeaseTable, clock: ManualClock
) -> None:
    leases = keeper(table, clock)
    table.claim("a", [1])
    leases.hold([1], since=clock.monotonic())
    stop = asyncio.Event()
    running = asyncio.create_task(leases.run(stop))
    await table.renewed.wait()

    stop.set()
    await asyncio.wait_for(running, timeout=10)

    assert table.renewals == 1
    assert leases.kept([1])
