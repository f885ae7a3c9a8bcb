"""One customer's page: usage over time, this period beside Stripe, link, batches, invoice.

The period comparison is read from Stripe when the page opens (``/reconcile`` does the same and
stores the result); when Stripe cannot be asked, the page shows the reconciler's latest stored
result and says when it was taken. Usage comes from the stored reports of the current billing
period (for a subscription's first period, also the 35 days before it, which it bills), at most
``CHART_REPORTS`` of them, newest first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from collector.api.console.context import Console
from collector.api.console.usage_chart import chart_windows, render
from collector.api.stripe_routes import InvoiceLineOut, invoice_lines
from collector.errors import CollectorError, NotFound
from collector.services.customers import CustomerFilter, CustomerView
from collector.services.usage import STRIPE_MAX_AGE
from common.windows import Window

CHART_REPORTS = 2000
RECENT_BATCHES = 20


@dataclass(frozen=True)
class Compared:
    """One metric this period: the collector's billable quantity beside Stripe's."""

    metric: str
    unit: str
    collector: Decimal | None
    stripe: Decimal | None
    difference: Decimal | None
    state: str
    incomplete_windows: int | None = None


@dataclass(frozen=True)
class Comparison:
    period: Window | None
    source: str
    """``stripe`` (read now), ``stored`` (the reconciler's latest), ``collector`` (no link)."""
    rows: list[Compared]
    state: str | None = None
    checked_at: datetime | None = None
    problem: str | None = None


@dataclass(frozen=True)
class Chart:
    metric: str
    unit: str
    svg: str
    windows: int
    partial: int
    unmeasured: int


@dataclass(frozen=True)
class Invoice:
    currency: str
    subtotal: int
    total: int
    amount_due: int
    lines: list[InvoiceLineOut]


@dataclass(frozen=True)
class CustomerPage:
    view: CustomerView
    period: Window
    charts: list[Chart]
    truncated: bool
    comparison: Comparison
    batches: list[Any]
    invoice: Invoice | None
    invoice_problem: str | None
    metrics_without_windows: list[str] = field(default_factory=list)


async def customer_page(console: Console, customer_id: str) -> CustomerPage:
    found = await console.customers.list(
        CustomerFilter(
            customer_ids=(customer_id,),
            silent_intervals=console.settings.console_silent_intervals,
        )
    )
    if not found:
        raise NotFound(
            f"customer {customer_id!r} never reported and is not linked", field="customer_id"
        )
    view = found[0]
    period, _, first = await console.usage.current_period(customer_id, console.clock.now())
    reports, truncated = await _reports(console, customer_id, period, first)
    charts, empty = _charts(console, reports)
    invoice, invoice_problem = await _invoice(console, view)
    return CustomerPage(
        view=view,
        period=period,
        charts=charts,
        truncated=truncated,
        comparison=await _comparison(console, view),
        batches=list(await console.forwarding.batches(None, customer_id, RECENT_BATCHES)),
        invoice=invoice,
        invoice_problem=invoice_problem,
        metrics_without_windows=empty,
    )


async def _reports(
    console: Console, customer_id: str, period: Window, first: bool
) -> tuple[list[Any], bool]:
    since = period.start - (STRIPE_MAX_AGE if first else timedelta(0))
    limit = console.settings.history_max_limit
    reports: list[Any] = []
    cursor = None
    while len(reports) < CHART_REPORTS:
        page = await console.usage.history(
            customer_id, limit=limit, cursor=cursor, since=since, until=period.end
        )
        reports.extend(page.reports)
        cursor = page.next_cursor
        if cursor is None:
            return reports, False
    return reports[:CHART_REPORTS], True


def _charts(console: Console, reports: list[Any]) -> tuple[list[Chart], list[str]]:
    charts, empty = [], []
    first = min((r.window_start for r in reports), default=None)
    last = max((r.window_end for r in reports), default=None)
    for name in console.catalogue.names:
        unit = console.catalogue[name].unit
        windows = chart_windows(reports, name)
        if not windows:
            empty.append(name)
            continue
        charts.append(
            Chart(
                name,
                unit,
                render(name, windows, start=first, end=last),
                len(windows),
                sum(1 for w in windows if w.state == "partial"),
                sum(1 for w in windows if w.state == "unmeasured"),
            )
        )
    return charts, empty


async def _comparison(console: Console, view: CustomerView) -> Comparison:
    catalogue = console.catalogue
    if not view.linked:
        totals = await console.usage.totals(view.customer_id)
        return Comparison(
            Window(totals.since, totals.until),
            "collector",
            [
                Compared(t.name, t.unit, t.value, None, None, "unlinked", t.incomplete_windows)
                for t in totals.totals
            ],
        )
    try:
        result = await console.reconciler.reconcile(view.customer_id)
    except CollectorError as exc:
        problem = exc.detail
    else:
        return Comparison(
            result.period,
            "stripe",
            [
                Compared(
                    m.metric,
                    catalogue[m.metric].unit if m.metric in catalogue else "",
                    Decimal(m.collector_billable) if m.collector_billable is not None else None,
                    m.stripe_value,
                    m.difference,
                    m.state,
                    m.incomplete_windows,
                )
                for m in result.metrics
            ],
            state=result.state,
            checked_at=result.checked_at,
        )
    stored = await console.reconciliation.latest(customer_id=view.customer_id)
    if not stored:
        return Comparison(None, "stored", [], problem=problem)
    latest = stored[0]
    return Comparison(
        Window(latest.record.period_start, latest.record.period_end),
        "stored",
        [
            Compared(
                m.metric,
                catalogue[m.metric].unit if m.metric in catalogue else "",
                m.collector,
                m.stripe,
                m.difference,
                m.state,
            )
            for m in latest.metrics
        ],
        state=latest.state,
        checked_at=latest.record.checked_at,
        problem=problem,
    )


async def _invoice(console: Console, view: CustomerView) -> tuple[Invoice | None, str | None]:
    """Stripe's preview of the next invoice, or why there is none."""
    if not view.linked:
        return None, "not linked to a Stripe customer, so Stripe has no invoice to preview"
    try:
        invoice = await console.reconciler.invoice_preview(view.customer_id)
    except CollectorError as exc:
        return None, exc.detail
    return (
        Invoice(
            currency=str(invoice.get("currency") or "usd"),
            subtotal=int(invoice.get("subtotal") or 0),
            total=int(invoice.get("total") or 0),
            amount_due=int(invoice.get("amount_due") or 0),
            lines=invoice_lines(invoice),
        ),
        None,
    )
