"""The limiter bounds arrivals at Stripe, not just admissions, however calls are delayed."""

from __future__ import annotations

import asyncio
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.services.ratelimit import RateLimiter
from common.clock import ManualClock


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
    from datetime import UTC, datetime

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
