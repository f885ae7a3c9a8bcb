"""A limiter on what Stripe sees: never more than ``rate`` calls arriving in any one second.

A call holds its slot from admission until one second after it completes. Any two calls that
arrive at Stripe within one second of each other were therefore both counted when the later one
was admitted, so arrivals in any one-second window never exceed ``rate``, however the network
delays them. Admission-time stamping alone cannot promise that: delayed calls bunch up.

On PostgreSQL the slots are rows every replica shares (``SharedRateLimiter``), stamped by the
database's clock: admission is read before the call leaves and release after its answer came
back, so the argument holds for all replicas together, whatever their own clocks say. A slot
taken by a replica that dies frees when its lease (``COLLECTOR_STRIPE_TIMEOUT`` plus
``COLLECTOR_STRIPE_LEASE``, longer than any call may take) runs out. On SQLite (one replica)
the slots live in memory (``RateLimiter``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

import structlog

from collector.adapters.db.rate_buckets import SlotAnswer
from collector.errors import DatabaseUnavailable
from common.clock import Clock

log = structlog.get_logger("collector.ratelimit")

WINDOW = 1.0
SHORTEST_WAIT = 0.001
"""A caller that found every slot busy asks again no sooner than this (seconds)."""


def slot_shape(rate: float) -> tuple[int, float]:
    """Slots for ``rate`` calls/s, and how long each stays busy after its call completes."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    return max(1, int(rate)), (WINDOW if rate >= 1 else 1.0 / rate)


class CallLimiter(Protocol):
    """What the forwarder holds around every Stripe call."""

    def slot(self) -> AbstractAsyncContextManager[None]: ...


class RateLimiter:
    """Slots in memory: the limit holds for this process."""

    def __init__(self, rate: float, clock: Clock) -> None:
        self._capacity, self._hold = slot_shape(rate)
        self._clock = clock
        self._in_flight = 0
        self._finished: deque[float] = deque()
        self._changed = asyncio.Condition()

    def _busy(self, now: float) -> int:
        while self._finished and now - self._finished[0] >= self._hold:
            self._finished.popleft()
        return self._in_flight + len(self._finished)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one call's slot while the call runs and for a second after it."""
        while True:
            async with self._changed:
                now = self._clock.monotonic()
                if self._busy(now) < self._capacity:
                    self._in_flight += 1
                    break
                if not self._finished:
                    await self._changed.wait()
                    continue
                delay = self._hold - (now - self._finished[0]) + 0.001
            await self._clock.sleep(delay)
        try:
            yield
        finally:
            async with self._changed:
                self._in_flight -= 1
                self._finished.append(self._clock.monotonic())
                self._changed.notify_all()


class SlotStore(Protocol):
    """Shared slots (``collector.adapters.db.rate_buckets.RateBucketStore`` on PostgreSQL)."""

    async def prepare_slots(self, name: str, capacity: int) -> None: ...

    async def acquire_slot(
        self, name: str, capacity: int, holder: str, lease: float, now: float | None
    ) -> SlotAnswer: ...

    async def release_slot(
        self, name: str, slot: int, holder: str, hold: float, now: float | None
    ) -> bool: ...


class SharedRateLimiter:
    """Slots in the database: the limit holds for every replica together.

    ``lease`` bounds how long a slot stays taken if its holder never releases it (a crash); it
    must outlast any call. ``database_clock`` (production) stamps slots with the database's
    clock; otherwise with the injected clock's wall time (tests with one manual clock).
    """

    def __init__(
        self,
        store: SlotStore,
        rate: float,
        clock: Clock,
        *,
        lease: float,
        name: str = "stripe",
        database_clock: bool = True,
    ) -> None:
        self._capacity, self._hold = slot_shape(rate)
        if lease <= 0:
            raise ValueError("a slot's lease must be positive")
        self._store = store
        self._clock = clock
        self._lease = lease
        self._name = name
        self._database_clock = database_clock
        self._owner = uuid.uuid4().hex[:12]
        self._calls = 0
        self._prepared = False
        self._turn = asyncio.Lock()

    def _now(self) -> float | None:
        return None if self._database_clock else self._clock.now().timestamp()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the shared slots while the call runs and for a second after it."""
        number, holder = await self._acquire()
        try:
            yield
        finally:
            await self._release(number, holder)

    async def _acquire(self) -> tuple[int, str]:
        # One request at a time from this process: waiters queue here, not in the database.
        async with self._turn:
            if not self._prepared:
                await self._store.prepare_slots(self._name, self._capacity)
                self._prepared = True
            self._calls += 1
            holder = f"{self._owner}-{self._calls}"
            while True:
                answer = await self._store.acquire_slot(
                    self._name, self._capacity, holder, self._lease, self._now()
                )
                if answer.slot is not None:
                    return answer.slot, holder
                # A slot still in flight frees no sooner than ``hold`` after now.
                await self._clock.sleep(min(self._hold, max(SHORTEST_WAIT, answer.wait)))

    async def _release(self, number: int, holder: str) -> None:
        try:
            # The margin covers epoch seconds stored as floats (about 0.2 µs apart today), as
            # the local limiter's does, so a slot never frees a hair before its second is up.
            kept = await self._store.release_slot(
                self._name, number, holder, self._hold + SHORTEST_WAIT, self._now()
            )
        except DatabaseUnavailable as exc:
            log.warning(
                "could not release a Stripe rate-limit slot; it frees when its lease ends",
                limiter=self._name,
                slot=number,
                lease_s=self._lease,
                error=exc.detail,
            )
            return
        if not kept:
            log.warning(
                "a Stripe call outlasted its rate-limit slot's lease; raise COLLECTOR_STRIPE_LEASE",
                limiter=self._name,
                slot=number,
                lease_s=self._lease,
            )
