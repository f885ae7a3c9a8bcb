"""The background reconciler: every linked customer's current period beside Stripe, again and again.

Each round re-reads the linked customers and spreads them over the interval: customer k of N is
checked at offset k·interval/N from the round's start, so Stripe sees a steady trickle, never a
burst. Every Stripe read of a check also holds a slot of the reconcile limiter
(``COLLECTOR_RECONCILE_MAX_RPS``, shared by every replica on PostgreSQL): with more customers
than the interval can take at that rate, a round stretches instead of exceeding it, and the
next round starts when it ends. A check is ``ReconcileService.reconcile``, which stores the
result with its time and state as the customer's latest (an upsert: were two replicas ever to
run the loop at once, they would repeat reads, never corrupt results). Only the leading replica
runs it (``collector.services.leader``). A failed check is logged and counted, and the round
goes on with the next customer.

A customer's state changes are logged, once each: ``customer_drift_started`` (a warning, with
the drifting metrics and both values) and ``customer_drift_stopped``. The gauges count linked
customers by their latest state and give the largest drift per metric among drifting ones.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import structlog

from collector.adapters.db.customer_view import CustomerViewStore, ReconcileRecord
from collector.adapters.db.links import LinkStore
from collector.errors import CustomerNotLinked
from collector.services.drift import (
    DRIFTING,
    IN_SYNC,
    SETTLING,
    UNKNOWN,
    metric_drifts,
    stored_state,
)
from collector.services.reconcile import ReconcileService, Reconciliation, record_of
from collector.telemetry import CollectorMetrics
from common.clock import Clock

log = structlog.get_logger("collector.reconciler")


@dataclass(frozen=True)
class Slot:
    customer_id: str
    offset: float
    """Seconds from the round's start."""


def schedule(customers: Sequence[str], interval: float) -> list[Slot]:
    """Customer k of N at ``k * interval / N``: one round's checks spread over the interval."""
    count = len(customers)
    return [Slot(c, k * interval / count) for k, c in enumerate(customers)]


@dataclass(frozen=True)
class Check:
    """One customer checked in a round: when it started, and its state (None: it failed)."""

    customer_id: str
    at: datetime
    state: str | None
    error: str | None = None


class Reconciler:
    """Runs rounds of reconciles until stopped; see the module docstring."""

    def __init__(
        self,
        service: ReconcileService,
        links: LinkStore,
        view: CustomerViewStore,
        telemetry: CollectorMetrics,
        clock: Clock,
        metrics: Sequence[str],
        *,
        interval: float,
    ) -> None:
        if interval <= 0:
            raise ValueError("the reconcile interval must be positive")
        self._service = service
        self._links = links
        self._view = view
        self._telemetry = telemetry
        self._clock = clock
        self._metrics = tuple(metrics)
        self._interval = interval
        self._latest: dict[str, ReconcileRecord] | None = None
        for name in self._metrics:
            telemetry.reconcile_max_drift.labels(name)

    async def run(self, stop: asyncio.Event, *, rounds: int | None = None) -> None:
        """Round after round, one interval apart, until ``stop`` is set (or ``rounds`` ran)."""
        done = 0
        while not stop.is_set():
            started = self._clock.monotonic()
            try:
                await self.round(stop)
            except Exception as exc:
                log.warning(
                    "reconcile round failed", error=type(exc).__name__, detail=str(exc)[:300]
                )
            done += 1
            if rounds is not None and done >= rounds:
                return
            await self._wait(stop, self._interval - (self._clock.monotonic() - started))

    def step_down(self) -> None:
        """This replica stopped leading: zero the gauges, re-read the results when it leads again.

        Another replica reconciles meanwhile and stores its results; the gauges then come from
        the leader alone, so ``max`` over replicas reads them.
        """
        self._latest = None
        self._publish()

    async def round(self, stop: asyncio.Event | None = None) -> list[Check]:
        """Check every linked customer once, spread over the interval; the checks made."""
        customers = [link.customer_id for link in await self._links.all()]
        await self._keep_only(customers)
        self._publish()
        started = self._clock.monotonic()
        checks: list[Check] = []
        for slot in schedule(customers, self._interval):
            await self._wait(stop, started + slot.offset - self._clock.monotonic())
            if stop is not None and stop.is_set():
                return checks
            checks.append(await self.check(slot.customer_id))
        self._telemetry.reconcile_rounds.inc()
        return checks

    async def check(self, customer_id: str) -> Check:
        """Reconcile one customer now, log a change of drift, refresh the gauges."""
        at = self._clock.now()
        latest = await self._known()
        previous = latest.get(customer_id)
        try:
            result = await self._service.reconcile(customer_id)
        except CustomerNotLinked:
            latest.pop(customer_id, None)
            self._publish()
            return Check(customer_id, at, None, "no longer linked")
        except Exception as exc:
            self._telemetry.reconcile_checks.labels("failed").inc()
            detail = str(exc)[:300]
            log.warning(
                "reconcile_failed",
                customer_id=customer_id,
                error=type(exc).__name__,
                detail=detail,
            )
            return Check(customer_id, at, None, detail)
        self._telemetry.reconcile_checks.labels("ok").inc()
        latest[customer_id] = record_of(result, result.checked_at or at)
        self._log_change(stored_state(previous) if previous else UNKNOWN, result)
        self._publish()
        return Check(customer_id, at, result.state)

    async def _known(self) -> dict[str, ReconcileRecord]:
        """Each customer's latest result: read from the database once, then kept in memory."""
        if self._latest is None:
            self._latest = dict(await self._view.reconcile_results())
        return self._latest

    async def _keep_only(self, customers: Sequence[str]) -> None:
        latest = await self._known()
        for gone in set(latest) - set(customers):
            del latest[gone]

    def _log_change(self, was: str, result: Reconciliation) -> None:
        state = result.state
        if state == DRIFTING and was != DRIFTING:
            log.warning(
                "customer_drift_started",
                customer_id=result.customer_id,
                stripe_customer_id=result.stripe_customer_id,
                period_start=result.period.start.isoformat(),
                period_end=result.period.end.isoformat(),
                metrics={
                    m.metric: {
                        "collector": m.collector_billable,
                        "stripe": None if m.stripe_value is None else str(m.stripe_value),
                        "difference": str(m.difference),
                    }
                    for m in result.metrics
                    if m.state == DRIFTING
                },
                fix=f"GET /api/usage/{result.customer_id}/reconcile",
            )
        elif was == DRIFTING and state != DRIFTING:
            log.info(
                "customer_drift_stopped",
                customer_id=result.customer_id,
                stripe_customer_id=result.stripe_customer_id,
                state=state,
            )

    def _publish(self) -> None:
        """Set the gauges from every linked customer's latest result."""
        latest = self._latest or {}
        states = [stored_state(r) for r in latest.values()]
        self._telemetry.customers_in_sync.set(states.count(IN_SYNC))
        self._telemetry.customers_drifting.set(states.count(DRIFTING))
        self._telemetry.customers_settling.set(states.count(SETTLING))
        largest: dict[str, Decimal] = dict.fromkeys(self._metrics, Decimal(0))
        for record in latest.values():
            for drift in metric_drifts(record):
                if drift.state == DRIFTING:
                    size = abs(drift.difference)
                    largest[drift.metric] = max(largest.get(drift.metric, Decimal(0)), size)
        for name, size in largest.items():
            self._telemetry.reconcile_max_drift.labels(name).set(float(size))

    async def _wait(self, stop: asyncio.Event | None, seconds: float) -> None:
        """Wait ``seconds`` on the clock, or until ``stop`` is set."""
        if seconds <= 0 or (stop is not None and stop.is_set()):
            return
        if stop is None:
            await self._clock.sleep(seconds)
            return
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        stopper = asyncio.ensure_future(stop.wait())
        _, pending = await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
