"""Legacy usage records: only for a pinned ``Stripe-Version`` before 2025-03-31.basil.

With a newer or default version Stripe answers these paths as unknown routes, and so do we.
"""

from __future__ import annotations

from typing import Any

from collector.stripe_sandbox import aggregation, billing_objects, errors, params
from collector.stripe_sandbox.http import Request, Router
from collector.stripe_sandbox.state import Store

router = Router()
FUTURE_GRACE_SECONDS = 5 * 60


def _legacy_item(store: Store, req: Request) -> dict[str, Any]:
    if not req.is_legacy_version:
        raise errors.unknown_route(req.method, req.path)
    item_id = req.path_params["id"]
    item = store.items.get(item_id)
    if item is None:
        raise errors.no_such("subscription_item", item_id)
    return item


def create_usage_record(store: Store, req: Request) -> dict[str, Any]:
    """``increment`` adds to the quantity at that exact timestamp; ``set`` replaces it."""
    item = _legacy_item(store, req)
    recurring = store.prices[item["price"]]["recurring"] or {}
    if recurring.get("usage_type") != "metered" or recurring.get("meter"):
        raise errors.invalid(
            "Usage records can only be created for metered prices without a meter.",
            param="subscription_item",
        )
    p = req.params
    quantity = params.integer(p, "quantity")
    if quantity is None:
        raise errors.missing_param("quantity")
    if quantity < 0:
        raise errors.invalid("Quantity must be non-negative.", param="quantity")
    action = params.choice(p, "action", ("increment", "set"), "increment")
    raw_timestamp = p.get("timestamp", "now")
    timestamp = store.now() if raw_timestamp == "now" else params.integer(p, "timestamp")
    assert timestamp is not None
    if timestamp < item["current_period_start"]:
        raise errors.invalid(
            "Cannot create the usage record with this timestamp because timestamps must be "
            "after the subscription's current period start time.",
            param="timestamp",
        )
    if timestamp > store.now() + FUTURE_GRACE_SECONDS:
        raise errors.invalid(
            "Cannot create the usage record with this timestamp because timestamps must be "
            "before the current time.",
            param="timestamp",
        )
    quantities = store.usage.setdefault(item["id"], {})
    if action == "set":
        quantities[timestamp] = quantity
    else:
        quantities[timestamp] = quantities.get(timestamp, 0) + quantity
    record = billing_objects.usage_record(
        store.new_id("mbur"), quantity=quantity, item_id=item["id"], timestamp=timestamp
    )
    store.usage_log.append({**record, "action": action, "received_at": store.now()})
    return record


def list_usage_record_summaries(store: Store, req: Request) -> dict[str, Any]:
    """One summary per period, newest first: the current one, then the invoiced ones."""
    item = _legacy_item(store, req)
    recurring = store.prices[item["price"]]["recurring"] or {}
    how = recurring.get("aggregate_usage") or "sum"
    quantities = store.usage.get(item["id"], {})
    spans: list[tuple[int, int, str | None]] = [
        (item["current_period_start"], item["current_period_end"], None)
    ]
    for closed in reversed(store.closed_periods.get(item["id"], [])):
        spans.append((closed.start, closed.end, closed.invoice_id))
    data = [
        billing_objects.usage_record_summary(
            f"sis_{item['id'][3:]}{start}",
            item_id=item["id"],
            invoice_id=invoice_id,
            period=(start, end),
            total_usage=aggregation.legacy_total(how, quantities, start, end),
        )
        for start, end, invoice_id in spans
    ]
    return params.paginate(
        data, req.params, f"/v1/subscription_items/{item['id']}/usage_record_summaries"
    )


router.add("POST", "/v1/subscription_items/{id}/usage_records", create_usage_record)
router.add("GET", "/v1/subscription_items/{id}/usage_record_summaries", list_usage_record_summaries)
