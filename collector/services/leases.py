"""Batch leases kept alive while their Stripe calls are in flight, and given up in time.

A claim leases a batch for ``lease`` seconds. While this worker holds batches, ``run`` renews
their leases every ``renew_every`` seconds. The database sets a renewed lease to end at least
``lease`` after the renewal was sent, so each renewal that succeeds moves the batches' local
deadline to (when it was sent) + ``lease`` - ``renew_every``: ``renew_every`` before any other
replica could claim them. A batch is lost when its deadline passes without a renewal (the
database unreachable or slow) or when a renewal finds it is no longer this worker's. ``guard``
then cancels the call carrying it, and a call not started yet is not started.

What this cannot rule out: a call cancelled here may already have reached Stripe and still be
processed there after another replica's resend began (a process paused longer than the margin,
a network that delivers late). The batch's identifier makes that harmless: Stripe keeps one
meter event per identifier and one answer per idempotency key.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

import structlog

from common.clock import Clock

log = structlog.get_logger("collector.leases")
T = TypeVar("T")


class LeaseStore(Protocol):
    """Renews leases (``collector.adapters.db.outbox.OutboxStore``)."""

    async def renew_leases(
        self, owner: str, ids: Collection[int], now: datetime, lease: timedelta
    ) -> set[int]: ...


@dataclass
class Hold:
    """One held batch: which claim it came from, until when it is safe, whether it is lost."""

    token: int
    deadline: float
    lost: bool = False


class LeaseKeeper:
    """The batches this worker holds; see the module docstring."""

    def __init__(
        self,
        store: LeaseStore,
        owner: str,
        clock: Clock,
        *,
        lease: float,
        renew_every: float,
    ) -> None:
        if renew_every <= 0 or renew_every * 2 > lease:
            raise ValueError("renew_every must be positive and at most half the lease")
        self._store = store
        self._owner = owner
        self._clock = clock
        self._lease = lease
        self._renew_every = renew_every
        self._held: dict[int, Hold] = {}
        self._tokens = itertools.count(1)
        self._changed = asyncio.Event()
        self._renewed_at: float | None = None
        self._renewing: asyncio.Task[None] | None = None

    @property
    def margin(self) -> float:
        """Seconds between giving a batch up and the earliest moment another may claim it."""
        return self._renew_every

    def hold(self, ids: Collection[int], since: float) -> None:
        """``ids`` were claimed by a statement sent at monotonic time ``since``."""
        token = next(self._tokens)
        deadline = since + self._lease - self._renew_every
        for batch_id in ids:
            self._held[batch_id] = Hold(token, deadline)

    def release(self, ids: Collection[int]) -> None:
        """``ids`` are settled, or left to lapse: stop renewing them."""
        for batch_id in ids:
            self._held.pop(batch_id, None)

    def kept(self, ids: Collection[int]) -> bool:
        """Whether this worker still safely holds every one of ``ids``."""
        return all(i in self._held and not self._held[i].lost for i in ids)

    async def renew(self) -> None:
        """Renew every held lease once; a failure leaves the deadlines where they were."""
        holds = {i: h.token for i, h in self._held.items() if not h.lost}
        if not holds:
            return
        started = self._clock.monotonic()
        self._renewed_at = started
        try:
            kept = await self._store.renew_leases(
                self._owner, holds, self._clock.now(), timedelta(seconds=self._lease)
            )
        except Exception as exc:
            log.warning(
                "lease_renewal_failed",
                owner=self._owner,
                batches=len(holds),
                error=type(exc).__name__,
                detail=str(exc)[:300],
            )
            return
        lost = False
        for batch_id, token in holds.items():
            hold = self._held.get(batch_id)
            if hold is None or hold.token != token or hold.lost:
                continue
            if batch_id in kept:
                hold.deadline = max(hold.deadline, started + self._lease - self._renew_every)
            else:
                hold.lost = lost = True
        if lost:
            self._signal()

    def expire(self) -> list[int]:
        """Mark lost every batch whose deadline passed; the ids newly lost."""
        now = self._clock.monotonic()
        gone = [i for i, h in self._held.items() if not h.lost and h.deadline <= now]
        for batch_id in gone:
            self._held[batch_id].lost = True
        if gone:
            self._signal()
        return gone

    async def guard(self, ids: Collection[int], call: Awaitable[T]) -> T | None:
        """``call``'s result, or None if a lease of ``ids`` was lost first (the call cancelled)."""
        task = asyncio.ensure_future(call)
        try:
            while not task.done():
                if not self.kept(ids):
                    task.cancel()
                    await asyncio.wait({task})
                    return None
                waiter = asyncio.ensure_future(self._changed.wait())
                try:
                    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
            return task.result()
        finally:
            if not task.done():
                task.cancel()

    async def run(self, stop: asyncio.Event) -> None:
        """Renew while anything is held, expire what could not be renewed, until ``stop``."""
        try:
            while not stop.is_set():
                await self._wait(stop, self._next_wake() - self._clock.monotonic())
                self.expire()
                if self._due() and (self._renewing is None or self._renewing.done()):
                    self._renewing = asyncio.ensure_future(self.renew())
        finally:
            if self._renewing is not None and not self._renewing.done():
                self._renewing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._renewing

    def _due(self) -> bool:
        if not self._held:
            return False
        last = self._renewed_at
        return last is None or self._clock.monotonic() - last >= self._renew_every

    def _next_wake(self) -> float:
        now = self._clock.monotonic()
        wake = now + self._renew_every
        renewing = self._renewing is not None and not self._renewing.done()
        if self._held and not renewing:
            last = self._renewed_at
            wake = now if last is None else min(wake, last + self._renew_every)
        deadlines = [h.deadline for h in self._held.values() if not h.lost]
        return min([wake, *deadlines])

    def _signal(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    @staticmethod
    async def _wait(stop: asyncio.Event, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)
