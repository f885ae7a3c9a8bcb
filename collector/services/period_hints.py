"""The billing periods an agent is told in the answer to its report, cached briefly.

An agent cuts its windows at these boundaries and never compacts across them. The answer is
advice: the collector bills every window by its own rule either way, so a hint a few seconds
stale after a renewal costs nothing but a straddling window, which the collector places by
its last second.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from collector.adapters.db.links import LinkStore
from common.billing_periods import PeriodBounds
from common.clock import Clock

HORIZON = timedelta(days=62)


class PeriodHints:
    def __init__(self, links: LinkStore, clock: Clock, *, ttl: float = 30.0) -> None:
        self._links = links
        self._clock = clock
        self._ttl = ttl
        self._cache: dict[str, tuple[float, list[PeriodBounds]]] = {}

    async def for_customer(self, customer_id: str) -> list[PeriodBounds]:
        """The current subscription's periods that ended at most 62 days ago, oldest first."""
        now = self._clock.monotonic()
        cached = self._cache.get(customer_id)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        periods = await self._links.periods(customer_id)
        horizon: datetime = self._clock.now() - HORIZON
        bounds = [PeriodBounds(start=p.start, end=p.end) for p in periods if p.end > horizon]
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[customer_id] = (now, bounds)
        return bounds

    def forget(self, customer_id: str) -> None:
        self._cache.pop(customer_id, None)
