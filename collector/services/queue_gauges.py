"""Gauges of what waits for Stripe, sampled in the background, so a stuck queue can alert.

Counters and the lag histogram only move when something is delivered; usage that never reaches
Stripe (a customer not linked, Stripe refusing or down) leaves them still. These gauges are read
from the outbox itself every ``SAMPLE_EVERY`` seconds: what waits, how old the oldest waiting
usage is (from its window end), open dead letters, and how many customers wait and why. Every
replica samples the same database, so alert on ``max`` over replicas, never on a sum.

The ``usage_waiting_unlinked`` warnings are the leader's alone (``leads``): every replica would
otherwise log the same customers, once each. A new leader starts its own reminders, so after a
takeover the customers still waiting are warned about once more.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from collector.adapters.db.outbox import OutboxStore, QueueSnapshot, UnlinkedCustomer
from collector.telemetry import CollectorMetrics
from common.clock import Clock

log = structlog.get_logger("collector.queue")
SAMPLE_EVERY = 15.0
"""Seconds between two samples: about one Prometheus scrape interval."""
UNLINKED_REMINDER = timedelta(hours=1)
"""A customer whose usage keeps waiting without a link is warned about again this often."""
UNLINKED_LISTED = 50
"""At most this many unlinked customers are warned about per sample (oldest waiting first)."""


class QueueGauges:
    """Sets the queue gauges from one outbox read; the leader also warns of unlinked usage."""

    def __init__(
        self,
        outbox: OutboxStore,
        metrics: CollectorMetrics,
        clock: Clock,
        *,
        every: float = SAMPLE_EVERY,
        leads: Callable[[], bool] = lambda: True,
    ) -> None:
        self._outbox = outbox
        self._metrics = metrics
        self._clock = clock
        self._every = every
        self._leads = leads
        self._warned: dict[str, datetime] = {}

    async def sample(self) -> QueueSnapshot:
        """Read the outbox once, set every queue gauge, warn of unlinked customers' usage."""
        now = self._clock.now()
        snapshot = await self._outbox.queue_snapshot()
        metrics = self._metrics
        metrics.pending_forwards.labels("pending").set(snapshot.pending)
        metrics.pending_forwards.labels("batched").set(snapshot.batched)
        oldest = snapshot.oldest_window_end
        metrics.oldest_unbilled_seconds.set(
            max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
        )
        metrics.open_dead_letters.set(snapshot.dead_batches)
        for reason, customers in snapshot.customers_by_reason.items():
            metrics.customers_unbilled.labels(reason).set(customers)
        if snapshot.unlinked_customers and self._leads():
            self._warn_unlinked(await self._outbox.unlinked_customers(UNLINKED_LISTED), now)
        else:
            self._warned.clear()
        return snapshot

    def _warn_unlinked(self, waiting: list[UnlinkedCustomer], now: datetime) -> None:
        """Once when a customer's usage starts waiting for a link, then hourly while it does."""
        listed = {c.customer_id for c in waiting}
        self._warned = {c: t for c, t in self._warned.items() if c in listed}
        for customer in waiting:
            last = self._warned.get(customer.customer_id)
            if last is not None and now - last < UNLINKED_REMINDER:
                continue
            self._warned[customer.customer_id] = now
            log.warning(
                "usage_waiting_unlinked",
                customer_id=customer.customer_id,
                forwards=customer.forwards,
                oldest_window_end=customer.oldest_window_end.isoformat(),
                waiting_seconds=round(max(0.0, (now - customer.oldest_window_end).total_seconds())),
                fix=f"usage-collector customers link {customer.customer_id} cus_..., or a "
                "subscription webhook with metadata.customer_id",
            )

    async def run(self, stop: asyncio.Event) -> None:
        """Sample until ``stop`` is set; a failed sample is logged and the gauges keep values."""
        while not stop.is_set():
            try:
                await self.sample()
            except Exception as exc:
                log.warning(
                    "queue gauges not sampled", error=type(exc).__name__, detail=str(exc)[:300]
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._every)
