"""Rate limits shared by replicas: several limiters, each with its own engine, on one PostgreSQL.

Each "replica" has its own connection pool, as separate pods would. Time is a manual clock the
replicas share (passed to the database), except where a test checks the database's own clock.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from collector.adapters.db.engine import create_engine
from collector.adapters.db.migrate import upgrade_async
from collector.adapters.db.rate_buckets import RateBucketStore
from collector.errors import DatabaseUnavailable
from collector.services.ratelimit import SharedRateLimiter
from collector.services.token_buckets import SharedTokenBuckets
from common.clock import ManualClock, SystemClock
from tests.support.binaries import free_port

pytestmark = pytest.mark.postgres
REPLICAS = 3


@pytest.fixture
async def stores(postgres_url: str) -> AsyncIterator[list[RateBucketStore]]:
    """One store per replica, each on its own engine (its own pool) over one database."""
    await upgrade_async(postgres_url)
    engines = [create_engine(postgres_url, pool_size=4) for _ in range(REPLICAS)]
    stores = [RateBucketStore(engine) for engine in engines]
    try:
        yield stores
    finally:
        for store, engine in zip(stores, engines, strict=True):
            await store.close()
            await engine.dispose()


def manual_clock() -> ManualClock:
    return ManualClock(datetime(2026, 1, 1, tzinfo=UTC))


async def hammer(replicas: list[SharedTokenBuckets], key: str, each: int) -> list[int]:
    """``each`` concurrent requests to every replica at once; how many each replica granted."""
    waits = await asyncio.gather(*(r.admit(key) for r in replicas for _ in range(each)))
    return [sum(1 for w in waits[i * each : (i + 1) * each] if w == 0) for i in range(REPLICAS)]


async def test_replicas_together_grant_one_burst_then_the_rate_then_refill_after_idle(
    stores: list[RateBucketStore],
) -> None:
    clock = manual_clock()
    rate, burst = 5.0, 60
    replicas = [
        SharedTokenBuckets(store, rate, burst, clock, database_clock=False) for store in stores
    ]
    try:
        assert await hammer(replicas, "cred-a", 10) == [10, 10, 10]
        assert sum(await hammer(replicas, "cred-a", 40)) == burst - 30

        clock.advance(2.0)
        assert sum(await hammer(replicas, "cred-a", 40)) == rate * 2.0

        assert sum(await hammer(replicas, "cred-b", 5)) == 15

        clock.advance(3600)
        assert sum(await hammer(replicas, "cred-a", 40)) == burst
    finally:
        for replica in replicas:
            await replica.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_requests_at_random_times_never_exceed_rate_times_window_plus_burst(
    stores: list[RateBucketStore], seed: int
) -> None:
    clock = manual_clock()
    rate, burst = 4.0, 6
    rng = random.Random(seed)
    replicas = [
        SharedTokenBuckets(store, rate, burst, clock, database_clock=False) for store in stores
    ]
    granted: list[float] = []
    try:
        for _ in range(25):
            clock.advance(rng.choice([0.0, 0.1, 0.25, 0.5, 1.0, 2.5]))
            counts = [rng.randint(0, 4) for _ in replicas]
            waits = await asyncio.gather(
                *(r.admit("cred") for r, n in zip(replicas, counts, strict=True) for _ in range(n))
            )
            granted += [clock.monotonic() for w in waits if w == 0]
    finally:
        for replica in replicas:
            await replica.close()
    for i, start in enumerate(granted):
        for end in granted[i:]:
            within = sum(1 for t in granted if start <= t <= end)
            assert within <= rate * (end - start) + burst + 1e-6


async def test_a_replica_whose_statement_read_the_clock_earlier_does_not_refill_twice(
    stores: list[RateBucketStore],
) -> None:
    take = stores[0].take
    assert (await take({"k": 2}, 1.0, 2, 100.0))["k"].granted == 2
    # Another replica's statement read 99.0, then committed after the one that read 100.0.
    assert (await stores[1].take({"k": 1}, 1.0, 2, 99.0))["k"].granted == 0
    assert (await take({"k": 1}, 1.0, 2, 100.0))["k"].granted == 0
    assert (await take({"k": 1}, 1.0, 2, 101.0))["k"].granted == 1


async def test_a_kept_connection_the_server_closed_is_replaced_without_failing_a_request(
    stores: list[RateBucketStore], postgres_url: str
) -> None:
    store = stores[0]
    assert (await store.take({"k": 1}, 1.0, 5, 100.0))["k"].granted == 1
    await terminate_other_sessions(postgres_url)
    assert (await store.take({"k": 1}, 1.0, 5, 100.0))["k"].granted == 1


async def test_an_unreachable_database_answers_database_unavailable(postgres_url: str) -> None:
    closed = make_url(postgres_url).set(port=free_port())
    engine = create_engine(closed.render_as_string(hide_password=False), pool_size=1)
    store = RateBucketStore(engine)
    try:
        with pytest.raises(DatabaseUnavailable):
            await store.take({"k": 1}, 1.0, 5, 100.0)
    finally:
        await store.close()
        await engine.dispose()


async def terminate_other_sessions(postgres_url: str) -> None:
    engine = create_engine(postgres_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            await conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
    finally:
        await engine.dispose()


async def test_the_database_clock_stamps_buckets_every_replica_shares(
    stores: list[RateBucketStore],
) -> None:
    clock = SystemClock()
    replicas = [SharedTokenBuckets(store, 0.01, 3, clock) for store in stores]
    try:
        waits = [await replicas[i % REPLICAS].admit("cred-db") for i in range(4)]
    finally:
        for replica in replicas:
            await replica.close()
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert 90 < waits[3] <= 100


async def test_concurrent_replicas_never_hold_more_slots_than_the_capacity(
    stores: list[RateBucketStore],
) -> None:
    capacity = 5
    await stores[0].prepare_slots("stripe", capacity)
    answers = await asyncio.gather(
        *(
            store.acquire_slot("stripe", capacity, f"holder-{i}-{j}", 60.0, 1000.0)
            for i, store in enumerate(stores)
            for j in range(10)
        )
    )
    taken = [a.slot for a in answers if a.slot is not None]
    assert sorted(taken) == list(range(capacity))
    # A refused caller may have read the slots before the winners committed: it just asks again.
    assert all(a.wait <= 60.0 for a in answers if a.slot is None)


async def test_the_database_clock_keeps_a_released_slot_busy_for_a_second(
    stores: list[RateBucketStore],
) -> None:
    await stores[0].prepare_slots("stripe", 1)
    held = await stores[0].acquire_slot("stripe", 1, "one", 60.0, None)
    assert held.slot == 0
    in_flight = await stores[1].acquire_slot("stripe", 1, "two", 60.0, None)
    assert in_flight.slot is None
    assert 59 < in_flight.wait <= 60
    assert await stores[0].release_slot("stripe", 0, "one", 1.0, None)
    resting = await stores[2].acquire_slot("stripe", 1, "three", 60.0, None)
    assert resting.slot is None
    assert 0 < resting.wait <= 1
    assert not await stores[1].release_slot("stripe", 0, "two", 1.0, None)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_replicas_used_as_the_forwarder_uses_them_never_exceed_the_rate(
    stores: list[RateBucketStore], seed: int
) -> None:
    clock = manual_clock()
    rate, calls, concurrency = 4, 12, 3
    rng = random.Random(seed)
    arrivals: list[list[float]] = [[] for _ in stores]

    async def replica(index: int, store: RateBucketStore) -> None:
        limiter = SharedRateLimiter(store, rate, clock, lease=60.0, database_clock=False)
        gate = asyncio.Semaphore(concurrency)

        async def call() -> None:
            await clock.sleep(rng.uniform(0, 2))
            async with gate, limiter.slot():
                await clock.sleep(rng.uniform(0, 0.6))
                arrivals[index].append(clock.monotonic())
                await clock.sleep(rng.uniform(0, 0.6))

        await asyncio.gather(*(call() for _ in range(calls)))

    await asyncio.gather(*(replica(i, store) for i, store in enumerate(stores)))
    assert [len(a) for a in arrivals] == [calls] * REPLICAS
    flat = sorted(t for replica_arrivals in arrivals for t in replica_arrivals)
    for i, start in enumerate(flat):
        within = sum(1 for t in flat[i:] if t - start < 1.0)
        assert within <= rate, (start, within)
