"""Per-credential rate limits: a token bucket each, refilled at ``rate`` and holding ``burst``.

Over any stretch of ``T`` seconds a bucket grants at most ``rate * T + burst`` requests. On
PostgreSQL the buckets live in the database and every replica takes from the same one, so that
bound holds for the whole deployment, not per replica; on SQLite (one replica) they live in
memory. Either way the middleware calls ``admit``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from collector.adapters.db.rate_buckets import Taken
from collector.errors import DatabaseUnavailable
from common.clock import Clock

SHORTEST_WAIT = 0.001
"""A refused request is never told to retry sooner than this (seconds)."""


def refill(tokens: float, elapsed: float, rate: float, burst: float) -> float:
    """Tokens after ``elapsed`` seconds: never more than ``burst``; time never runs backwards."""
    return min(burst, tokens + max(0.0, elapsed) * rate)


def wait_for_one(tokens: float, rate: float) -> float:
    """Seconds until a bucket holding ``tokens`` (less than one) holds a whole token."""
    return max(SHORTEST_WAIT, (1.0 - tokens) / rate)


class RequestLimits(Protocol):
    """What the authentication middleware asks before it lets a credential's request through."""

    async def admit(self, key: str) -> float:
        """0 when the request may go ahead, else the seconds until one request is allowed."""
        ...

    async def close(self) -> None: ...


class TokenBuckets:
    """In memory, for one process: ``take(key)`` spends one request or says how long to wait."""

    def __init__(self, rate: float, burst: int, clock: Clock, *, max_keys: int = 100_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> float:
        """0 when the request may go ahead, else the seconds until one request is allowed."""
        now = self._clock.monotonic()
        tokens, stamp = self._buckets.get(key, (self._burst, now))
        tokens = refill(tokens, now - stamp, self._rate, self._burst)
        if tokens >= 1.0:
            if key not in self._buckets and len(self._buckets) >= self._max_keys:
                self._forget_full(now)
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self._rate

    async def admit(self, key: str) -> float:
        return self.take(key)

    async def close(self) -> None:
        return None

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled completely: forgetting them changes nothing."""
        self._buckets = {
            key: (tokens, stamp)
            for key, (tokens, stamp) in self._buckets.items()
            if tokens + (now - stamp) * self._rate < self._burst
        }


class BucketStore(Protocol):
    """Shared buckets (``collector.adapters.db.rate_buckets.RateBucketStore`` on PostgreSQL)."""

    async def take(
        self, wanted: Mapping[str, int], rate: float, burst: float, now: float | None
    ) -> dict[str, Taken]: ...

    async def close(self) -> None: ...


@dataclass
class _Waiting:
    key: str
    future: asyncio.Future[float] = field(repr=False)


class SharedTokenBuckets:
    """Buckets in the database, shared by every replica.

    Requests that arrive while a statement is running wait for the next one, which takes for all
    of them at once (several from one key included): under load a replica makes one round trip
    per batch, not per request.

    ``database_clock`` (production): the database's clock stamps every bucket, so replicas whose
    clocks disagree still refill each bucket at ``rate``. Otherwise the injected clock's wall
    time is used (tests, where every simulated replica shares one manual clock).
    """

    def __init__(
        self,
        store: BucketStore,
        rate: float,
        burst: int,
        clock: Clock,
        *,
        database_clock: bool = True,
        max_batch: int = 1000,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self._store = store
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._database_clock = database_clock
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Waiting] | None = None
        self._task: asyncio.Task[None] | None = None

    async def admit(self, key: str) -> float:
        queue = self._ensure_running()
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        queue.put_nowait(_Waiting(key, future))
        return await future

    def _ensure_running(self) -> asyncio.Queue[_Waiting]:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._queue = asyncio.Queue()
            self._task = loop.create_task(self._run(self._queue))
        assert self._queue is not None
        return self._queue

    async def close(self) -> None:
        """Stop taking, and give back the connection the store keeps for it."""
        task, self._task = self._task, None
        if task is not None and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while self._queue is not None and not self._queue.empty():
            _fail([self._queue.get_nowait()], DatabaseUnavailable("the collector is stopping"))
        await self._store.close()

    async def _run(self, queue: asyncio.Queue[_Waiting]) -> None:
        while True:
            waiting = [await queue.get()]
            while len(waiting) < self._max_batch and not queue.empty():
                waiting.append(queue.get_nowait())
            batch: dict[str, list[_Waiting]] = {}
            for one in waiting:
                if not one.future.done():
                    batch.setdefault(one.key, []).append(one)
            if batch:
                await self._take(batch)

    async def _take(self, batch: dict[str, list[_Waiting]]) -> None:
        now = None if self._database_clock else self._clock.now().timestamp()
        wanted = {key: len(requests) for key, requests in batch.items()}
        everyone = [one for requests in batch.values() for one in requests]
        try:
            answers = await self._store.take(wanted, self._rate, self._burst, now)
        except asyncio.CancelledError:
            _fail(everyone, DatabaseUnavailable("the collector is stopping"))
            raise
        except Exception as exc:
            error = exc
            if not isinstance(exc, DatabaseUnavailable):
                error = DatabaseUnavailable(f"rate limits are unavailable ({type(exc).__name__})")
                error.__cause__ = exc
            _fail(everyone, error)
            return
        for key, requests in batch.items():
            answer = answers.get(key)
            for position, one in enumerate(requests):
                if one.future.done():
                    continue
                if answer is None:
                    one.future.set_exception(DatabaseUnavailable("no answer from the rate limits"))
                elif position < answer.granted:
                    one.future.set_result(0.0)
                else:
                    behind = position - answer.granted
                    one.future.set_result(wait_for_one(answer.tokens - behind, self._rate))


def _fail(waiting: list[_Waiting], error: Exception) -> None:
    for one in waiting:
        if not one.future.done():
            one.future.set_exception(error)
