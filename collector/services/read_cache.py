"""A cache of slow reads on the request path: each kept ``ttl`` seconds, one read per key at a time.

When an entry lapses under load, every request in flight for its key would otherwise read the
database at once (and those beyond the pool open connections). Requests that miss together share
one read. A read still under way when the cache is told to forget is not remembered: it may
predate the change that made the cache forget (a revoked credential, a renewed subscription).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Hashable

from common.clock import Clock


class ReadCache[K: Hashable, V]:
    """``get(key)`` calls ``read(key)`` at most once per ``ttl`` seconds."""

    def __init__(
        self,
        read: Callable[[K], Awaitable[V]],
        clock: Clock,
        *,
        ttl: float,
        max_entries: int = 10_000,
    ) -> None:
        self._read = read
        self._clock = clock
        self._ttl = ttl
        self._max_entries = max_entries
        self._entries: dict[K, tuple[V, float]] = {}
        self._reads: dict[K, asyncio.Future[V]] = {}
        self._generation = 0

    async def get(self, key: K) -> V:
        now = self._clock.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry[1] > now:
            return entry[0]
        pending = self._reads.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._read(key))
            self._reads[key] = pending
            pending.add_done_callback(functools.partial(self._keep, key, now, self._generation))
        return await asyncio.shield(pending)

    def _keep(self, key: K, now: float, generation: int, done: asyncio.Future[V]) -> None:
        self._reads.pop(key, None)
        if done.cancelled() or done.exception() is not None or generation != self._generation:
            return
        if self._ttl > 0:
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
            self._entries[key] = (done.result(), now + self._ttl)

    def forget(self, key: K | None = None) -> None:
        """Drop ``key`` (every key when None); no read under way is remembered either."""
        if key is None:
            self._entries.clear()
        else:
            self._entries.pop(key, None)
        self._generation += 1
