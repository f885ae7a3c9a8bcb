"""The limiter bounds arrivals at Stripe, not just admissions, however calls are delayed."""

from __future__ import annotations

import asyncio
import random
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from collector.services.ratelimit import RateLimiter, SharedRateLimiter
from common.clock import ManualClock
from tests.support.rate_limits import MemorySlots


class Timeline(ManualClock):
    """Manual time; sleeps advance it, so the test is exact and instant."""


@settings(max_examples=60, deadline=None)
@given(
    rate=st.integers(1, 8),
    calls=st.integers(1, 40),
    concurrency=st.integers(1, 10),
    seed=st.integers(0, 10**6),
)
def test_no_one_second_window_sees_more_arrivals_than_the_rate(
    rate: int, calls: int, concurrency: int, seed: int
) -> None:
    arrivals = asyncio.run(simulate(rate, calls, concurrency, seed))
    arrivals.sort()
    for i, start in enumerate(arrivals):
        within = sum(1 for t in arrivals[i:] if t - start < 1.0)
        assert within <= rate, (start, within)


async def simulate(rate: int, calls: int, concurrency: int, seed: int) -> list[float]:
    clock = Timeline(datetime(2026, 1, 1, tzinfo=UTC))
    limiter = RateLimiter(rate, clock)
    rng = random.Random(seed)
    arrivals: list[float] = []
    gate = asyncio.Semaphore(concurrency)

    async def call() -> None:
        async with gate, limiter.slot():
            before = rng.uniform(0, 0.8)
            after = rng.uniform(0, 0.8)
            await clock.sleep(before)
            arrivals.append(clock.monotonic())
            await clock.sleep(after)

    await asyncio.gather(*(call() for _ in range(calls)))
    return arrivals


@settings(max_examples=60, deadline=None)
@given(
    rate=st.integers(1, 6),
    replicas=st.integers(2, 4),
    calls=st.integers(1, 30),
    concurrency=st.integers(1, 6),
    seed=st.integers(0, 10**6),
)
def test_replicas_sharing_slots_never_let_more_than_the_rate_arrive_in_one_second(
    rate: int, replicas: int, calls: int, concurrency: int, seed: int
) -> None:
    arrivals = asyncio.run(simulate_replicas(rate, replicas, calls, concurrency, seed))
    flat = sorted(t for replica in arrivals for t in replica)
    assert len(flat) == replicas * calls
    for i, start in enumerate(flat):
        within = sum(1 for t in flat[i:] if t - start < 1.0)
        assert within <= rate, (start, within)


def test_every_replica_gets_a_share_of_the_shared_rate() -> None:
    arrivals = asyncio.run(simulate_replicas(rate=4, replicas=3, calls=20, concurrency=4, seed=7))
    assert all(len(replica) == 20 for replica in arrivals)
    flat = sorted(t for replica in arrivals for t in replica)
    # 60 calls at 4 per second: the replicas together take at least 14 s, not 14 / 3.
    assert flat[-1] - flat[0] >= 60 / 4 - 1


def test_a_slot_held_by_a_replica_that_died_frees_when_its_lease_ends() -> None:
    async def scenario() -> float:
        clock = Timeline(datetime(2026, 1, 1, tzinfo=UTC))
        store = MemorySlots()
        dead = SharedRateLimiter(store, 1, clock, lease=30.0, database_clock=False)
        alive = SharedRateLimiter(store, 1, clock, lease=30.0, database_clock=False)
        held = dead.slot()
        await held.__aenter__()  # admitted, then the process died: never released
        start = clock.monotonic()
        async with alive.slot():
            waited = clock.monotonic() - start
        await held.__aexit__(None, None, None)
        return waited

    assert asyncio.run(scenario()) >= 30.0


def test_a_call_that_outlasted_its_lease_does_not_free_the_next_holders_slot() -> None:
    async def scenario() -> tuple[str | None, list[MutableMapping[str, Any]]]:
        clock = Timeline(datetime(2026, 1, 1, tzinfo=UTC))
        store = MemorySlots()
        slow = SharedRateLimiter(store, 1, clock, lease=5.0, database_clock=False)
        other = SharedRateLimiter(store, 1, clock, lease=5.0, database_clock=False)
        slow_call, other_call = slow.slot(), other.slot()
        await slow_call.__aenter__()
        clock.advance(6.0)
        await other_call.__aenter__()
        with capture_logs() as logs:
            await slow_call.__aexit__(None, None, None)
        holder = store.slots[("stripe", 0)][1]
        await other_call.__aexit__(None, None, None)
        return holder, logs

    holder, logs = asyncio.run(scenario())
    assert holder is not None
    assert any("COLLECTOR_STRIPE_LEASE" in str(line["event"]) for line in logs)


async def simulate_replicas(
    rate: int, replicas: int, calls: int, concurrency: int, seed: int
) -> list[list[float]]:
    """``replicas`` limiters on one store, used as the forwarder uses its limiter."""
    clock = Timeline(datetime(2026, 1, 1, tzinfo=UTC))
    store = MemorySlots()
    rng = random.Random(seed)
    arrivals: list[list[float]] = [[] for _ in range(replicas)]

    async def replica(index: int) -> None:
        limiter = SharedRateLimiter(store, rate, clock, lease=60.0, database_clock=False)
        gate = asyncio.Semaphore(concurrency)

        async def call() -> None:
            await clock.sleep(rng.uniform(0, 3))
            async with gate, limiter.slot():
                await clock.sleep(rng.uniform(0, 0.8))
                arrivals[index].append(clock.monotonic())
                await clock.sleep(rng.uniform(0, 0.8))

        await asyncio.gather(*(call() for _ in range(calls)))

    await asyncio.gather(*(replica(i) for i in range(replicas)))
    return arrivals
