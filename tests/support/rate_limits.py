"""In-memory stand-ins for the shared rate-limit store, with the SQL's arithmetic in Python.

They let unit tests run several "replicas" (limiter instances) against one store on a manual
clock; the PostgreSQL tests check that the real statements behave the same way.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping

from collector.adapters.db.rate_buckets import SlotAnswer, Taken
from collector.services.token_buckets import refill


class MemoryBuckets:
    """``RateBucketStore.take``: one statement per call, several requests per key."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[float, float]] = {}
        self.statements: list[dict[str, int]] = []

    async def take(
        self, wanted: Mapping[str, int], rate: float, burst: float, now: float | None
    ) -> dict[str, Taken]:
        assert now is not None, "the memory store has no clock of its own"
        self.statements.append(dict(wanted))
        answers: dict[str, Taken] = {}
        for key in sorted(wanted):
            tokens, stamp = self.rows.get(key, (burst, now))
            tokens = refill(tokens, now - stamp, rate, burst)
            granted = min(wanted[key], math.floor(tokens))
            self.rows[key] = (tokens - granted, max(stamp, now))
            answers[key] = Taken(granted, tokens - granted)
        await asyncio.sleep(0)
        return answers

    async def close(self) -> None:
        return None


class MemorySlots:
    """``RateBucketStore``'s slots: ``busy_until`` and ``holder`` per (name, slot)."""

    def __init__(self) -> None:
        self.slots: dict[tuple[str, int], tuple[float, str | None]] = {}

    async def prepare_slots(self, name: str, capacity: int) -> None:
        for number in range(capacity):
            self.slots.setdefault((name, number), (0.0, None))

    async def acquire_slot(
        self, name: str, capacity: int, holder: str, lease: float, now: float | None
    ) -> SlotAnswer:
        assert now is not None, "the memory store has no clock of its own"
        await asyncio.sleep(0)
        mine = sorted((n, v) for (k, n), v in self.slots.items() if k == name and n < capacity)
        for number, (busy_until, _) in mine:
            if busy_until <= now:
                self.slots[(name, number)] = (now + lease, holder)
                return SlotAnswer(number, 0.0)
        return SlotAnswer(None, min(busy_until for _, (busy_until, _) in mine) - now)

    async def release_slot(
        self, name: str, slot: int, holder: str, hold: float, now: float | None
    ) -> bool:
        assert now is not None, "the memory store has no clock of its own"
        await asyncio.sleep(0)
        if self.slots.get((name, slot), (0.0, None))[1] != holder:
            return False
        self.slots[(name, slot)] = (now + hold, None)
        return True
