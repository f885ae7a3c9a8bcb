"""Invoice lines from usage: meter aggregates, legacy usage records and licensed quantities."""

from __future__ import annotations

from typing import Any

from collector.stripe_sandbox import aggregation, billing_objects, line_text, objects, pricing
from collector.stripe_sandbox.state import Store

LINE_PRICE = "lines.data.pricing.price_details.price"


def usage_for(store: Store, item: dict[str, Any], start: int, end: int) -> int:
    """Raw usage of a metered item over ``[start, end)``, before transform_quantity."""
    price = store.prices[item["price"]]
    recurring = price["recurring"] or {}
    meter_id = recurring.get("meter")
    subscription = store.subscriptions[item["subscription"]]
    if meter_id:
        meter = store.meters[meter_id]
        customer = subscription["customer"]
        events = aggregation.in_range(
            store.meter_events_of(meter_id, customer), customer=customer, start=start, end=end
        )
        return aggregation.aggregate(meter["default_aggregation"]["formula"], events)
    quantities = store.usage.get(item["id"], {})
    return aggregation.legacy_total(
        recurring.get("aggregate_usage") or "sum", quantities, start, end
    )


def item_line(
    store: Store,
    item: dict[str, Any],
    period: tuple[int, int],
    invoice_id: str | None,
) -> dict[str, Any]:
    """One line: metered items priced on the period's usage, licensed ones on their quantity."""
    price = store.prices[item["price"]]
    recurring = price["recurring"] or {}
    if recurring.get("usage_type") == "metered":
        quantity = pricing.transform(
            usage_for(store, item, *period), price.get("transform_quantity")
        )
    else:
        quantity = int(item["quantity"] or 1)
    product = store.products.get(price["product"], {})
    return billing_objects.line_item(
        store.new_id("il"),
        invoice_id=invoice_id,
        amount=pricing.amount(price, quantity),
        currency=price["currency"],
        description=line_text.describe(quantity, price, product),
        period=period,
        quantity=quantity,
        price=price,
        subscription_id=item["subscription"],
        item_id=item["id"],
        unit_amount_decimal=price["unit_amount_decimal"],
    )


def items_of(store: Store, subscription: dict[str, Any]) -> list[dict[str, Any]]:
    return store.items_of(subscription["id"])


def build(
    store: Store,
    subscription: dict[str, Any],
    *,
    invoice_id: str | None,
    usage_period: tuple[int, int] | None,
    licensed_period: tuple[int, int] | None,
    billing_reason: str,
    status: str,
) -> dict[str, Any]:
    """An invoice with metered lines for ``usage_period`` and licensed ones for the next."""
    lines: list[dict[str, Any]] = []
    for item in items_of(store, subscription):
        metered = (store.prices[item["price"]]["recurring"] or {}).get("usage_type") == "metered"
        period = usage_period if metered else licensed_period
        if period is not None:
            lines.append(item_line(store, item, period, invoice_id))
    span = usage_period or licensed_period or (store.now(), store.now())
    return billing_objects.invoice(
        invoice_id,
        created=store.now(),
        customer=store.customers[subscription["customer"]],
        subscription=subscription,
        lines=lines,
        period=span,
        billing_reason=billing_reason,
        status=status,
    )


def render(
    store: Store, invoice: dict[str, Any], expand: list[str], prefix: str = ""
) -> dict[str, Any]:
    """The invoice as Stripe answers it: each line's price an id unless expanded."""
    if f"{prefix}{LINE_PRICE}" not in expand:
        return invoice
    shown = _copy(invoice)
    for line in shown["lines"]["data"]:
        details = (line.get("pricing") or {}).get("price_details") or {}
        stored = store.prices.get(str(details.get("price")))
        if stored is not None:
            details["price"] = objects.render_price(stored, expand, f"{prefix}{LINE_PRICE}.")
    return shown


def settle(store: Store, invoice: dict[str, Any], request_id: str | None = None) -> None:
    """Finalize and pay (or fail to pay) a new invoice, emitting Stripe's events in order."""
    now = store.now()
    store.invoices[invoice["id"]] = invoice
    store.emit("invoice.created", _copy(invoice), request_id=request_id)
    invoice["status"] = "open"
    invoice["number"] = (
        f"{store.customers[invoice['customer']]['invoice_prefix']}-{len(store.invoices):04d}"
    )
    invoice["status_transitions"]["finalized_at"] = now
    invoice["effective_at"] = now
    store.emit("invoice.finalized", _copy(invoice), request_id=request_id)
    invoice["attempt_count"] = 1
    invoice["attempted"] = True
    if invoice["customer"] in store.payment_failures and invoice["amount_due"] > 0:
        invoice["next_payment_attempt"] = now + 3 * 86400
        store.emit("invoice.payment_failed", _copy(invoice), request_id=request_id)
        return
    invoice["status"] = "paid"
    invoice["amount_paid"] = invoice["amount_due"]
    invoice["amount_remaining"] = 0
    invoice["status_transitions"]["paid_at"] = now
    store.emit("invoice.paid", _copy(invoice), request_id=request_id)


def _copy(invoice: dict[str, Any]) -> dict[str, Any]:
    import copy

    return copy.deepcopy(invoice)
