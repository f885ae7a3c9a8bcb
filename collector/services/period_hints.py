"""The billing periods an agent is told in the answer to its report, cached briefly.

An agent cuts its windows at these boundaries and never compacts across them. The answer is
advice: the collector bills every window by its own rule either way, so a hint a few seconds
stale after a renewal costs nothing but a straddling window, which the collector places by
its last second.
"""

from __future__ import annotations

import asyncio
import functools
from datetime import datetime, timedelta
from typing import Protocol

from collector.adapters.db.outbox_records import PeriodRef
from common.billing_periods import PeriodBounds
from common.clock import Clock

HORIZON = timedelta(days=62)


class PeriodSource(Protocol):
    async def periods(self, customer_id: str) -> list[PeriodRef]: ...


class PeriodHints:
    def __init__(self, links: PeriodSource, clock: Clock, *, ttl: float = 30.0) -> None:
        self._links = links
        self._clock = clock
        self._ttl = ttl
        self._cache: dict[str, tuple[float, list[PeriodBounds]]] = {}
        self._reads: dict[str, asyncio.Future[list[PeriodBounds]]] = {}
        self._generation = 0

    async def for_customer(self, customer_id: str) -> list[PeriodBounds]:
        """The current subscription's periods that ended at most 62 days ago, oldest first.

        One database read per customer at a time: a customer's instances report at the same
        minute, and every one that found the entry lapsed would otherwise read at once.
        """
        now = self._clock.monotonic()
        cached = self._cache.get(customer_id)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        pending = self._reads.get(customer_id)
        if pending is None:
            pending = asyncio.ensure_future(self._read(customer_id))
            self._reads[customer_id] = pending
            remember = functools.partial(self._remember, customer_id, now, self._generation)
            pending.add_done_callback(remember)
        return await asyncio.shield(pending)

    async def _read(self, customer_id: str) -> list[PeriodBounds]:
        periods = await self._links.periods(customer_id)
        horizon: datetime = self._clock.now() - HORIZON
        return [PeriodBounds(start=p.start, end=p.end) for p in periods if p.end > horizon]

    def _remember(
        self,
        customer_id: str,
        now: float,
        generation: int,
        done: asyncio.Future[list[PeriodBounds]],
    ) -> None:
        self._reads.pop(customer_id, None)
        if done.cancelled() or done.exception() is not None or generation != self._generation:
            return
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[customer_id] = (now, done.result())

    def forget(self, customer_id: str) -> None:
        """Read the customer's periods afresh next time; a read under way is not remembered."""
        self._cache.pop(customer_id, None)
        self._generation += 1
