"""Billing periods: interval arithmetic and closing a period when the clock passes its end."""

from __future__ import annotations

import calendar
import copy
import math
from datetime import UTC, datetime
from typing import Any

from collector.stripe_sandbox import invoices
from collector.stripe_sandbox.state import PeriodRecord, Store

LIVE = frozenset({"active", "past_due"})
"""Statuses whose periods renew; a subscription never returns to one once it leaves."""


def _add_months(anchor: int, months: int) -> int:
    moment = datetime.fromtimestamp(anchor, UTC)
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return int(moment.replace(year=year, month=month, day=day).timestamp())


def boundary(anchor: int, interval: str, count: int, n: int) -> int:
    """The ``n``-th period boundary after ``anchor``; months clamp to short months' ends."""
    if interval == "month":
        return _add_months(anchor, count * n)
    if interval == "year":
        return _add_months(anchor, 12 * count * n)
    step = {"day": 86400, "week": 7 * 86400}[interval]
    return anchor + step * count * n


def next_end(anchor: int, recurring: dict[str, Any], after: int) -> int:
    """The first period boundary strictly after ``after``."""
    interval, count = recurring.get("interval", "month"), int(recurring.get("interval_count", 1))
    n = 1
    while (end := boundary(anchor, interval, count, n)) <= after:
        n += 1
    return end


def recurring_of(store: Store, subscription: dict[str, Any]) -> dict[str, Any]:
    items = invoices.items_of(store, subscription)
    if not items:
        return {"interval": "month", "interval_count": 1}
    return store.prices[items[0]["price"]]["recurring"] or {"interval": "month"}


def close_period(store: Store, subscription: dict[str, Any]) -> None:
    """End the current period: invoice its usage, then start the next period (or cancel)."""
    from collector.stripe_sandbox.routes_subscriptions import cancel, render_subscription

    items = invoices.items_of(store, subscription)
    if not items:
        return
    start, end = items[0]["current_period_start"], items[0]["current_period_end"]
    if subscription["cancel_at_period_end"]:
        invoice_id = store.new_id("in")
        invoice = invoices.build(
            store,
            subscription,
            invoice_id=invoice_id,
            usage_period=(start, end),
            licensed_period=None,
            billing_reason="subscription_cycle",
            status="draft",
        )
        _record_closed(store, items, start, end, invoice_id)
        cancel(store, subscription, at=end)
        invoices.settle(store, invoice)
        return
    before = render_subscription(store, subscription, [])
    new_end = next_end(subscription["billing_cycle_anchor"], recurring_of(store, subscription), end)
    invoice_id = store.new_id("in")
    usage_invoice = invoices.build(
        store,
        subscription,
        invoice_id=invoice_id,
        usage_period=(start, end),
        licensed_period=(end, new_end),
        billing_reason="subscription_cycle",
        status="draft",
    )
    _record_closed(store, items, start, end, invoice_id)
    for item in items:
        item["current_period_start"], item["current_period_end"] = end, new_end
    subscription["latest_invoice"] = invoice_id
    store.emit(
        "customer.subscription.updated",
        render_subscription(store, subscription, []),
        previous_attributes={
            "items": copy.deepcopy(before["items"]),
            "latest_invoice": before["latest_invoice"],
        },
    )
    invoices.settle(store, usage_invoice)


def _record_closed(
    store: Store, items: list[dict[str, Any]], start: int, end: int, invoice_id: str
) -> None:
    for item in items:
        store.closed_periods.setdefault(item["id"], []).append(PeriodRecord(start, end, invoice_id))


def sync(store: Store) -> None:
    """Close every period whose end the clock has reached, as Stripe renews on its own.

    Runs before every request, so it returns at once while the clock is before the earliest
    period end it found last time (``Store.renew_after``).
    """
    now = store.now()
    if now < store.renew_after:
        return
    earliest = math.inf
    for subscription in list(store.subscriptions.values()):
        guard = 0
        while subscription["status"] in LIVE and guard < 1000:
            items = invoices.items_of(store, subscription)
            if not items or items[0]["current_period_end"] > now:
                break
            close_period(store, subscription)
            guard += 1
        items = invoices.items_of(store, subscription)
        if subscription["status"] in LIVE and items:
            earliest = min(earliest, items[0]["current_period_end"])
    store.renew_after = earliest


def advance(store: Store, subscription: dict[str, Any]) -> None:
    """Move the clock to the end of the current period and close it."""
    items = invoices.items_of(store, subscription)
    if items and subscription["status"] in {"active", "past_due"}:
        end = items[0]["current_period_end"]
        if store.now() < end:
            store.clock.set_timestamp(end)
    sync(store)
