"""Per-credential token buckets on a manual clock: in memory, and shared by replicas."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.adapters.db.rate_buckets import Taken
from collector.errors import DatabaseUnavailable
from collector.services.token_buckets import SharedTokenBuckets, TokenBuckets
from common.clock import ManualClock
from tests.support.rate_limits import MemoryBuckets


def test_a_burst_then_the_sustained_rate() -> None:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    buckets = TokenBuckets(rate=2.0, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)
    clock.advance(0.5)
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0


def test_credentials_do_not_share_a_bucket() -> None:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    buckets = TokenBuckets(rate=1.0, burst=1, clock=clock)
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0
    assert buckets.take("b") == 0.0


def test_a_bucket_never_holds_more_than_its_burst() -> None:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    buckets = TokenBuckets(rate=10.0, burst=2, clock=clock)
    clock.advance(3600)
    assert [buckets.take("a") == 0.0 for _ in range(3)] == [True, True, False]


def test_memory_is_bounded_by_forgetting_full_buckets() -> None:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    buckets = TokenBuckets(rate=1.0, burst=5, clock=clock, max_keys=10)
    for index in range(10):
        buckets.take(f"k{index}")
    clock.advance(60)
    assert buckets.take("new") == 0.0
    assert len(buckets._buckets) == 1


class WallTime(ManualClock):
    """Manual time whose monotonic reading is its wall time, as the shared buckets read it."""

    def monotonic(self) -> float:
        return self.now().timestamp()


@settings(max_examples=80, deadline=None)
@given(
    rate=st.sampled_from([0.5, 1.0, 2.0, 5.0]),
    burst=st.integers(1, 6),
    arrivals=st.lists(
        st.tuples(st.floats(0, 2), st.integers(0, 2), st.sampled_from(["a", "b"])), max_size=60
    ),
)
def test_replicas_sharing_buckets_answer_exactly_as_one_bucket_would(
    rate: float, burst: int, arrivals: list[tuple[float, int, str]]
) -> None:
    """Requests reaching three replicas one after another: the same answers as one process."""

    async def scenario() -> tuple[list[float], list[float]]:
        clock = WallTime(datetime(2026, 1, 1, tzinfo=UTC))
        store = MemoryBuckets()
        replicas = [
            SharedTokenBuckets(store, rate, burst, clock, database_clock=False) for _ in range(3)
        ]
        alone = TokenBuckets(rate, burst, clock)
        shared, single = [], []
        for gap, index, key in arrivals:
            clock.advance(gap)
            shared.append(await replicas[index].admit(key))
            single.append(alone.take(key))
        for replica in replicas:
            await replica.close()
        return shared, single

    shared, single = asyncio.run(scenario())
    assert [w == 0 for w in shared] == [w == 0 for w in single]
    for got, expected in zip(shared, single, strict=True):
        assert got == pytest.approx(expected, abs=1e-3)


@settings(max_examples=40, deadline=None)
@given(
    rate=st.sampled_from([1.0, 3.0, 10.0]),
    burst=st.integers(1, 10),
    rounds=st.lists(st.tuples(st.floats(0, 1.5), st.integers(0, 12)), min_size=1, max_size=12),
)
def test_concurrent_requests_to_replicas_never_exceed_rate_times_window_plus_burst(
    rate: float, burst: int, rounds: list[tuple[float, int]]
) -> None:
    async def scenario() -> list[tuple[float, bool]]:
        clock = WallTime(datetime(2026, 1, 1, tzinfo=UTC))
        store = MemoryBuckets()
        replicas = [
            SharedTokenBuckets(store, rate, burst, clock, database_clock=False) for _ in range(3)
        ]
        outcomes: list[tuple[float, bool]] = []
        for gap, per_replica in rounds:
            clock.advance(gap)
            waits = await asyncio.gather(
                *(r.admit("cred") for r in replicas for _ in range(per_replica))
            )
            outcomes += [(clock.monotonic(), w == 0) for w in waits]
        for replica in replicas:
            await replica.close()
        return outcomes

    granted = [t for t, ok in asyncio.run(scenario()) if ok]
    for i, start in enumerate(granted):
        for end in granted[i:]:
            within = sum(1 for t in granted if start <= t <= end)
            assert within <= rate * (end - start) + burst + 1e-6


def test_requests_that_arrive_together_share_one_statement() -> None:
    async def scenario() -> tuple[list[float], MemoryBuckets]:
        clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
        store = MemoryBuckets()
        buckets = SharedTokenBuckets(store, 1.0, 2, clock, database_clock=False)
        keys = [f"k{i}" for i in range(20)] + ["k0", "k0", "k0"]
        waits = await asyncio.gather(*(buckets.admit(key) for key in keys))
        await buckets.close()
        return waits, store

    waits, store = asyncio.run(scenario())
    assert waits[:21] == [0.0] * 21
    assert waits[21:] == [pytest.approx(1.0), pytest.approx(2.0)]
    assert store.statements == [{**{f"k{i}": 1 for i in range(1, 20)}, "k0": 4}]


def test_a_database_failure_answers_the_waiting_requests_with_database_unavailable() -> None:
    class Broken(MemoryBuckets):
        async def take(
            self, wanted: Mapping[str, int], rate: float, burst: float, now: float | None
        ) -> dict[str, Taken]:
            raise OSError("connection refused")

    async def scenario() -> None:
        clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
        buckets = SharedTokenBuckets(Broken(), 1.0, 2, clock, database_clock=False)
        try:
            with pytest.raises(DatabaseUnavailable):
                await buckets.admit("a")
            with pytest.raises(DatabaseUnavailable):
                await buckets.admit("a")
        finally:
            await buckets.close()

    asyncio.run(scenario())


def test_requests_waiting_when_the_collector_stops_get_database_unavailable() -> None:
    class Stuck(MemoryBuckets):
        async def take(
            self, wanted: Mapping[str, int], rate: float, burst: float, now: float | None
        ) -> dict[str, Taken]:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

    async def scenario() -> list[BaseException | float]:
        clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
        buckets = SharedTokenBuckets(Stuck(), 1.0, 2, clock, database_clock=False)
        waiting = [asyncio.create_task(buckets.admit(key)) for key in ("a", "b")]
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        await buckets.close()
        return await asyncio.gather(*waiting, return_exceptions=True)

    outcomes = asyncio.run(scenario())
    assert [type(o) for o in outcomes] == [DatabaseUnavailable, DatabaseUnavailable]
