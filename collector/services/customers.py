"""The customers view: every customer with its link, period, instances and unbilled usage.

A customer is anyone who reported or was linked. Its instances are silent when their newest
window ended more than ``silent_intervals`` of their own window lengths ago (the agent's own
health rule uses three). Usage is unbillable when it waits with no billing period to go to:
no link, or a link whose subscription was not read yet (``ForwardingStatusService.waiting``).
The reconcile state is the latest stored result of ``/reconcile`` or of the background
reconciler for the current period: ``unknown`` until one ran.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from collector.adapters.db.customer_view import CustomerViewStore, ForwardTally, ReconcileRecord
from collector.adapters.db.links import LinkStore
from collector.services.drift import stored_state
from collector.services.periods import resolve
from common.billing_periods import PeriodBounds
from common.clock import Clock

DEFAULT_SILENT_INTERVALS = 3


@dataclass(frozen=True)
class Unbillable:
    customer_id: str
    reason: str


@dataclass(frozen=True)
class InstanceView:
    instance_id: str
    last_report_at: datetime
    last_window_end: datetime
    interval_seconds: float
    silent: bool


@dataclass(frozen=True)
class CustomerView:
    customer_id: str
    stripe_customer_id: str | None
    subscription_id: str | None
    period: PeriodBounds | None
    instances: list[InstanceView]
    pending: int
    sent: int
    dead: int
    oldest_unbilled: datetime | None
    oldest_unbilled_seconds: float | None
    reconcile: str
    reconciled_at: datetime | None
    unbillable: str | None

    @property
    def linked(self) -> bool:
        return self.stripe_customer_id is not None

    @property
    def silent(self) -> bool:
        return any(i.silent for i in self.instances)


@dataclass(frozen=True)
class CustomerFilter:
    """Which customers to list; every condition given must hold."""

    unlinked: bool = False
    """Customers with stored usage and no link."""
    silent: bool = False
    out_of_sync: bool = False
    unbillable: bool = False
    silent_intervals: int = DEFAULT_SILENT_INTERVALS
    customer_ids: Sequence[str] = field(default_factory=tuple)

    def keeps(self, view: CustomerView) -> bool:
        return (
            (not self.unlinked or (not view.linked and bool(view.instances)))
            and (not self.silent or view.silent)
            and (not self.out_of_sync or view.reconcile == "drifting")
            and (not self.unbillable or view.unbillable is not None)
        )


def reconcile_state(result: ReconcileRecord | None) -> str:
    """``in_sync``, ``drifting``, ``settling`` (apart while usage is on its way or within the
    settle delay) or ``unknown`` (never reconciled): the stored state, see ``drift``."""
    return stored_state(result)


class CustomersService:
    def __init__(
        self,
        view: CustomerViewStore,
        links: LinkStore,
        clock: Clock,
        unbillable: Callable[[], Awaitable[Sequence[Unbillable]]],
    ) -> None:
        self._view = view
        self._links = links
        self._clock = clock
        self._unbillable = unbillable

    async def list(self, which: CustomerFilter | None = None) -> list[CustomerView]:
        """Every customer that reported or was linked, by id, narrowed by ``which``."""
        which = which or CustomerFilter()
        now = self._clock.now()
        links = {link.customer_id: link for link in await self._links.all()}
        instances: dict[str, list[InstanceView]] = {}
        for seen in await self._view.instances():
            length = max((seen.last_window_end - seen.last_window_start), timedelta(seconds=1))
            instances.setdefault(seen.customer_id, []).append(
                InstanceView(
                    seen.instance_id,
                    seen.last_report_at,
                    seen.last_window_end,
                    length.total_seconds(),
                    now - seen.last_window_end > which.silent_intervals * length,
                )
            )
        tallies = await self._view.forward_tallies()
        results = await self._view.reconcile_results()
        reasons = {u.customer_id: u.reason for u in await self._unbillable()}
        ids = sorted(set(links) | set(instances) | set(tallies))
        if which.customer_ids:
            ids = [i for i in ids if i in set(which.customer_ids)]
        views = []
        for customer_id in ids:
            link = links.get(customer_id)
            period = None
            if link is not None:
                current = resolve(now, link, await self._links.periods(customer_id, link))
                if current is not None:
                    period = PeriodBounds(start=current.start, end=current.end)
            tally = tallies.get(customer_id, ForwardTally())
            result = results.get(customer_id)
            views.append(
                CustomerView(
                    customer_id=customer_id,
                    stripe_customer_id=link.stripe_customer_id if link else None,
                    subscription_id=link.subscription_id if link else None,
                    period=period,
                    instances=instances.get(customer_id, []),
                    pending=tally.pending,
                    sent=tally.sent,
                    dead=tally.dead,
                    oldest_unbilled=tally.oldest_unbilled,
                    oldest_unbilled_seconds=(
                        max(0.0, (now - tally.oldest_unbilled).total_seconds())
                        if tally.oldest_unbilled
                        else None
                    ),
                    reconcile=reconcile_state(result),
                    reconciled_at=result.checked_at if result else None,
                    unbillable=reasons.get(customer_id)
                    or (
                        "not linked to Stripe: `usage-collector customers link` or a subscription "
                        "webhook"
                        if link is None and tally.pending
                        else None
                    ),
                )
            )
        return [v for v in views if which.keeps(v)]
