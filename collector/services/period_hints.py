"""The billing periods an agent is told in the answer to its report, cached briefly.

An agent cuts its windows at these boundaries and never compacts across them. The answer is
advice: the collector bills every window by its own rule either way, so a hint a few seconds
stale after a renewal costs nothing but a straddling window, which the collector places by
its last second.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from collector.adapters.db.outbox_records import PeriodRef
from collector.services.read_cache import ReadCache
from common.billing_periods import PeriodBounds
from common.clock import Clock

HORIZON = timedelta(days=62)


class PeriodSource(Protocol):
    async def periods(self, customer_id: str) -> list[PeriodRef]: ...


class PeriodHints:
    def __init__(self, links: PeriodSource, clock: Clock, *, ttl: float = 30.0) -> None:
        self._links = links
        self._clock = clock
        self._periods: ReadCache[str, list[PeriodBounds]] = ReadCache(self._read, clock, ttl=ttl)

    async def for_customer(self, customer_id: str) -> list[PeriodBounds]:
        """The current subscription's periods that ended at most 62 days ago, oldest first.

        One database read per customer at a time: a customer's instances report at the same
        minute, and every one that found the entry lapsed would otherwise read at once.
        """
        return await self._periods.get(customer_id)

    async def _read(self, customer_id: str) -> list[PeriodBounds]:
        periods = await self._links.periods(customer_id)
        horizon: datetime = self._clock.now() - HORIZON
        return [PeriodBounds(start=p.start, end=p.end) for p in periods if p.end > horizon]

    def forget(self, customer_id: str) -> None:
        """Read the customer's periods afresh next time; a read under way is not remembered."""
        self._periods.forget(customer_id)
