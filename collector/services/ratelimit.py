"""A sliding-window limiter: never more than ``rate`` calls in any one-second window."""

from __future__ import annotations

import asyncio
from collections import deque

from common.clock import Clock


class RateLimiter:
    """Strict by construction: a call waits until the call ``rate`` places back is a second old."""

    def __init__(self, rate: float, clock: Clock) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._capacity = max(1, int(rate))
        self._window = 1.0 if rate >= 1 else 1.0 / rate
        self._clock = clock
        self._calls: deque[float] = deque()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._clock.monotonic()
                while self._calls and now - self._calls[0] >= self._window:
                    self._calls.popleft()
                if len(self._calls) < self._capacity:
                    self._calls.append(now)
                    return
                await self._clock.sleep(self._window - (now - self._calls[0]) + 0.001)
