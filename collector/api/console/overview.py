"""``/console/``: is what Stripe bills what was measured, and is anything stuck or silent?

Customers by the reconciler's latest stored result (in sync, settling, drifting, never checked)
and those with no link; the forwarding queue as ``/api/forwarding/status`` counts it; agent
instances silent for ``COLLECTOR_CONSOLE_SILENT_INTERVALS`` of their own intervals; and waiting
usage nearing Stripe's 35-day limit. A key limited to one customer sees that customer's share.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.response import Template

from collector.api.auth import current_principal
from collector.api.console.context import Console, live_refresh, page
from collector.services.customers import CustomerFilter, CustomerView, InstanceView
from collector.services.drift import Reconciled
from collector.services.principals import Principal

RECONCILE_STATES = ("in_sync", "settling", "drifting", "unknown")


@dataclass(frozen=True)
class Queue:
    """The forwarding queue; ``None`` where a scoped key cannot see the whole queue's figure."""

    pending: int
    batched: int | None
    dead: int
    oldest_seconds: float | None
    calls_saved: int | None
    batches: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Silent:
    customer_id: str
    instance: InstanceView
    silent_seconds: float


@dataclass(frozen=True)
class Overview:
    states: dict[str, int]
    linked: int
    unlinked: int
    drifting: list[Reconciled]
    queue: Queue
    silent: list[Silent]
    ageing: list[Any]
    checked_at: datetime | None
    scoped_to: str | None


async def overview(console: Console, principal: Principal) -> Overview:
    """The overview's figures, from the services behind ``/api/customers``,
    ``/api/reconciliation`` and ``/api/forwarding/status``."""
    scope = principal.customer_id
    views = await console.customers.list(
        CustomerFilter(
            customer_ids=(scope,) if scope else (),
            silent_intervals=console.settings.console_silent_intervals,
        )
    )
    linked = [v for v in views if v.linked]
    states = Counter(v.reconcile for v in linked)
    drifting = await console.reconciliation.latest(customer_id=scope, state="drifting")
    checked = [v.reconciled_at for v in linked if v.reconciled_at is not None]
    if scope is None:
        status = await console.forwarding.status()
        queue = Queue(
            pending=status.forwards.get("pending", 0),
            batched=status.forwards.get("batched", 0),
            dead=status.forwards.get("dead", 0),
            oldest_seconds=status.lag_seconds,
            calls_saved=status.calls_saved,
            batches=dict(sorted(status.batches.items())),
        )
        ageing = list(status.ageing)
    else:
        queue = _customer_queue(views)
        ageing = [a for a in await console.forwarding.ageing() if a.customer_id == scope]
    now = console.clock.now()
    silent = [
        Silent(v.customer_id, i, max(0.0, (now - i.last_window_end).total_seconds()))
        for v in views
        for i in v.instances
        if i.silent
    ]
    return Overview(
        states={state: states.get(state, 0) for state in RECONCILE_STATES},
        linked=len(linked),
        unlinked=sum(1 for v in views if not v.linked),
        drifting=drifting,
        queue=queue,
        silent=sorted(silent, key=lambda s: -s.silent_seconds),
        ageing=ageing,
        checked_at=max(checked, default=None),
        scoped_to=scope,
    )


def _customer_queue(views: list[CustomerView]) -> Queue:
    """One customer's forwards, as the customers view counts them."""
    return Queue(
        pending=sum(v.pending for v in views),
        batched=None,
        dead=sum(v.dead for v in views),
        oldest_seconds=max(
            (v.oldest_unbilled_seconds for v in views if v.oldest_unbilled_seconds is not None),
            default=None,
        ),
        calls_saved=None,
    )


class OverviewController(Controller):
    path = "/"

    @get("/", name="console:overview")
    async def overview(
        self, request: Request[Any, Any, Any], console: NamedDependency[Console]
    ) -> Template:
        figures = await overview(console, current_principal(request))
        template = "_overview_live.html" if live_refresh(request) else "overview.html"
        return page(
            request,
            console,
            template,
            o=figures,
            title="Overview",
            silent_intervals=console.settings.console_silent_intervals,
        )
