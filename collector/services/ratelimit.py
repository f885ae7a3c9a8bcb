"""A limiter on what Stripe sees: never more than ``rate`` calls arriving in any one second.

A call holds its slot from admission until one second after it completes. Any two calls that
arrive at Stripe within one second of each other were therefore both counted when the later one
was admitted, so arrivals in any one-second window never exceed ``rate``, however the network
delays them. Admission-time stamping alone cannot promise that: delayed calls bunch up.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from common.clock import Clock

WINDOW = 1.0


class RateLimiter:
    def __init__(self, rate: float, clock: Clock) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._capacity = max(1, int(rate))
        self._hold = WINDOW if rate >= 1 else 1.0 / rate
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
