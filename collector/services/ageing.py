"""Watching waiting usage age towards Stripe's 35-day limit on event timestamps.

Stripe refuses a meter event older than 35 days, and the collector never resends a timestamp
Stripe refused. So usage that waits (a customer not linked, a period not known, Stripe down) is
reported days before it would age out: in the log, in ``/metrics`` and in the status endpoint.
The leading replica checks once a minute (``run``); the others keep their gauges at zero.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

import structlog

from collector.adapters.db.corrections import Ageing, CorrectionStore
from collector.telemetry import CollectorMetrics
from common.clock import Clock

log = structlog.get_logger("collector.ageing")
STRIPE_LIMIT = timedelta(days=35)
LOG_EVERY = timedelta(hours=1)
CHECK_EVERY = 60.0
"""Seconds between two checks of the leading replica."""


class AgeingWatch:
    def __init__(
        self,
        corrections: CorrectionStore,
        clock: Clock,
        metrics: CollectorMetrics,
        *,
        warning_days: float,
    ) -> None:
        self._corrections = corrections
        self._clock = clock
        self._metrics = metrics
        self._warning = timedelta(days=warning_days)
        self._logged: dict[tuple[str, str], datetime] = {}

    async def ageing(self) -> list[Ageing]:
        """Waiting usage within the warning time of the limit, or past it, oldest first."""
        now = self._clock.now()
        return await self._corrections.ageing(now - (STRIPE_LIMIT - self._warning))

    async def check(self) -> list[Ageing]:
        """Update the gauges and warn (at most hourly per customer and metric)."""
        now = self._clock.now()
        rows = await self.ageing()
        self._metrics.ageing_forwards.set(sum(r.forwards for r in rows))
        soonest = min((r.expires_at for r in rows), default=None)
        self._metrics.ageing_expires_seconds.set(
            (soonest - now).total_seconds() if soonest else 0.0
        )
        for row in rows:
            key = (row.customer_id, row.metric)
            last = self._logged.get(key)
            if last is not None and now - last < LOG_EVERY:
                continue
            self._logged[key] = now
            log.warning(
                "waiting usage nears Stripe's 35-day limit; link the customer or fix what "
                "holds it, or it must be rebilled into a later period",
                customer_id=row.customer_id,
                metric=row.metric,
                windows=row.forwards,
                oldest_window_end=row.oldest_window_end.isoformat(),
                expires_at=row.expires_at.isoformat(),
            )
        return rows

    async def run(self, stop: asyncio.Event, *, every: float = CHECK_EVERY) -> None:
        """Check every ``every`` seconds until ``stop`` is set; a failed check is logged."""
        while not stop.is_set():
            try:
                await self.check()
            except Exception as exc:
                log.warning("ageing check failed", error=type(exc).__name__, detail=str(exc)[:300])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)

    def step_down(self) -> None:
        """This replica stopped leading: its gauges read zero, the leader's hold the values."""
        self._metrics.ageing_forwards.set(0)
        self._metrics.ageing_expires_seconds.set(0)
        self._logged.clear()
