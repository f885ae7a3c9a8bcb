"""What counts as drift, and the latest reconcile result per customer.

Drift is exact: a metric whose billable quantity differs from Stripe's by any amount is out of
sync. Being out of sync is not yet drift, though: usage still on its way (a forward Stripe has
not acknowledged) and Stripe's own aggregation delay explain a difference for a while. A metric
out of sync is ``settling`` while a forward of it waits, or while its newest delivery is younger
than the settle delay (``COLLECTOR_RECONCILE_SETTLE``); past that it is ``drifting``. A customer
drifts when any of its metrics does, settles when none drifts and one settles, and is in sync
otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from collector.adapters.db.customer_view import CustomerViewStore, ReconcileRecord

IN_SYNC = "in_sync"
DRIFTING = "drifting"
SETTLING = "settling"
UNKNOWN = "unknown"
STATES = (IN_SYNC, DRIFTING, SETTLING)


def metric_state(
    in_sync: bool,
    waiting: int,
    last_sent_at: datetime | None,
    now: datetime,
    settle: timedelta,
) -> str:
    """One metric's state: in sync, settling (usage on its way or just delivered), drifting."""
    if in_sync:
        return IN_SYNC
    if waiting or (last_sent_at is not None and now - last_sent_at < settle):
        return SETTLING
    return DRIFTING


def customer_state(states: Iterable[str]) -> str:
    """Drifting if any metric drifts, else settling if any settles, else in sync."""
    seen = set(states)
    if DRIFTING in seen:
        return DRIFTING
    return SETTLING if SETTLING in seen else IN_SYNC


def stored_state(result: ReconcileRecord | None) -> str:
    """A stored result's state; results from before states were kept: apart while forwards are
    pending means settling, else drifting. ``unknown`` when never reconciled."""
    if result is None:
        return UNKNOWN
    if result.state is not None:
        return result.state
    if result.in_sync:
        return IN_SYNC
    return SETTLING if result.drift.get("pending_forwards") else DRIFTING


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


@dataclass(frozen=True)
class MetricDrift:
    metric: str
    collector: Decimal | None
    """The collector's billable quantity for the period (None: nothing measured)."""
    stripe: Decimal | None
    """Stripe's aggregate (None: no meter or item to read)."""
    difference: Decimal
    """``stripe - collector``, each missing side as 0: positive when Stripe bills more."""
    state: str


def metric_drifts(result: ReconcileRecord) -> list[MetricDrift]:
    """The metrics a stored result lists (older results list only those out of sync)."""
    listed = result.drift.get("metrics") or {}
    drifts = []
    for name in sorted(listed):
        entry = listed[name] if isinstance(listed[name], dict) else {}
        collector, stripe = _decimal(entry.get("collector")), _decimal(entry.get("stripe"))
        difference = _decimal(entry.get("difference"))
        if difference is None:
            difference = (stripe or Decimal(0)) - (collector or Decimal(0))
        state = entry.get("state")
        if state not in STATES:
            state = IN_SYNC if difference == 0 else stored_state(result)
        drifts.append(MetricDrift(name, collector, stripe, difference, str(state)))
    return drifts


@dataclass(frozen=True)
class Reconciled:
    """A customer's latest stored reconcile result, as listed by ``GET /api/reconciliation``."""

    record: ReconcileRecord
    state: str
    metrics: list[MetricDrift]

    @property
    def pending_forwards(self) -> int:
        return int(self.record.drift.get("pending_forwards") or 0)


class ReconciliationList:
    """The latest result per customer, from the table the reconciler and ``/reconcile`` write."""

    def __init__(self, view: CustomerViewStore) -> None:
        self._view = view

    async def latest(
        self, *, customer_id: str | None = None, state: str | None = None
    ) -> list[Reconciled]:
        """Every customer's latest result by customer id, narrowed to one customer or state."""
        results = await self._view.reconcile_results(customer_id)
        listed = []
        for customer in sorted(results):
            record = results[customer]
            current = stored_state(record)
            if state is None or current == state:
                listed.append(Reconciled(record, current, metric_drifts(record)))
        return listed
