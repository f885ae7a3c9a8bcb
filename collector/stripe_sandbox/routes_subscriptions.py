"""Subscriptions and subscription items."""

from __future__ import annotations

import copy
from typing import Any

from collector.stripe_sandbox import billing_objects, errors, invoices, objects, params, periods
from collector.stripe_sandbox.http import Request, Router
from collector.stripe_sandbox.state import Store

router = Router()
LIVE_STATUSES = ("active", "past_due", "trialing", "unpaid", "incomplete")


def render_item(
    store: Store, item: dict[str, Any], expand: list[str], prefix: str = ""
) -> dict[str, Any]:
    shown = copy.deepcopy(item)
    stored_price = store.prices[item["price"]]
    shown["price"] = objects.render_price(stored_price, expand, f"{prefix}price.")
    shown["plan"] = objects.plan(stored_price)
    return shown


def render_subscription(
    store: Store, subscription: dict[str, Any], expand: list[str], prefix: str = ""
) -> dict[str, Any]:
    shown = copy.deepcopy(subscription)
    items = invoices.items_of(store, subscription)
    shown["items"] = objects.list_object(
        [render_item(store, i, expand, f"{prefix}items.data.") for i in items],
        f"/v1/subscription_items?subscription={subscription['id']}",
    )
    return shown


def _subscription(store: Store, subscription_id: str) -> dict[str, Any]:
    found = store.subscriptions.get(subscription_id)
    if found is None:
        raise errors.no_such("subscription", subscription_id)
    return found


def _item(store: Store, item_id: str) -> dict[str, Any]:
    found = store.items.get(item_id)
    if found is None:
        raise errors.no_such("subscription_item", item_id)
    return found


def _new_item(
    store: Store,
    subscription: dict[str, Any],
    spec: dict[str, Any],
    param: str,
    period: tuple[int, int],
) -> dict[str, Any]:
    price_id = str(params.required(spec, "price"))
    price = store.prices.get(price_id)
    if price is None:
        raise errors.no_such("price", price_id, f"{param}[price]")
    if price["recurring"] is None:
        raise errors.invalid("The price must be recurring.", param=f"{param}[price]")
    metered = price["recurring"]["usage_type"] == "metered"
    quantity = params.integer(spec, "quantity")
    if metered and quantity is not None:
        raise errors.invalid(
            "Quantity should not be specified where usage_type is `metered`. "
            "Remove quantity from the items.",
            param=f"{param}[quantity]",
        )
    item = billing_objects.subscription_item(
        store.new_id("si", 14),
        created=store.now(),
        subscription_id=subscription["id"],
        price_id=price_id,
        quantity=None if metered else (1 if quantity is None else quantity),
        metadata=params.metadata(spec),
        period=period,
    )
    store.add_item(item)
    return item


def create_subscription(store: Store, req: Request) -> dict[str, Any]:
    p = req.params
    customer_id = str(params.required(p, "customer"))
    if customer_id not in store.customers:
        raise errors.no_such("customer", customer_id, "customer")
    specs = p.get("items")
    if not isinstance(specs, list) or not specs:
        raise errors.missing_param("items")
    first_price = (
        store.prices.get(str(specs[0].get("price"))) if isinstance(specs[0], dict) else None
    )
    if first_price is None or first_price["recurring"] is None:
        raise errors.invalid("items[0][price] must be a recurring price.", param="items[0][price]")
    now = store.now()
    subscription = billing_objects.subscription(
        store.new_id("sub"),
        created=now,
        customer=customer_id,
        currency=first_price["currency"],
        metadata=params.metadata(p),
        collection_method=params.choice(
            p, "collection_method", ("charge_automatically", "send_invoice"), "charge_automatically"
        ),
        description=p.get("description") or None,
    )
    period = (now, periods.next_end(now, first_price["recurring"], now))
    created_items = []
    try:
        for index, spec in enumerate(specs):
            created_items.append(_new_item(store, subscription, spec, f"items[{index}]", period))
    except errors.StripeAPIError:
        for item in created_items:
            store.remove_item(item["id"])
        raise
    store.add_subscription(subscription)
    first = invoices.build(
        store,
        subscription,
        invoice_id=store.new_id("in"),
        usage_period=None,
        licensed_period=period,
        billing_reason="subscription_create",
        status="draft",
    )
    subscription["latest_invoice"] = first["id"]
    store.emit("customer.subscription.created", render_subscription(store, subscription, []))
    invoices.settle(store, first)
    return render_subscription(store, subscription, req.expand)


def retrieve_subscription(store: Store, req: Request) -> dict[str, Any]:
    return render_subscription(store, _subscription(store, req.path_params["id"]), req.expand)


def list_subscriptions(store: Store, req: Request) -> dict[str, Any]:
    p = req.params
    if p.get("customer"):
        items = params.newest_first(store.subscriptions_of(str(p["customer"])))
    else:
        items = params.newest_first(store.subscriptions.values())
    status = p.get("status")
    if status is None:
        items = [s for s in items if s["status"] != "canceled"]
    elif status != "all":
        items = [s for s in items if s["status"] == status]
    if p.get("price"):
        ids = {i["subscription"] for i in store.items.values() if i["price"] == p["price"]}
        items = [s for s in items if s["id"] in ids]
    expand = req.expand
    return params.paginate(
        items,
        p,
        "/v1/subscriptions",
        lambda s: render_subscription(store, s, expand, "data."),
    )


def update_subscription(store: Store, req: Request) -> dict[str, Any]:
    subscription = _subscription(store, req.path_params["id"])
    if subscription["status"] == "canceled":
        raise errors.invalid(
            "A canceled subscription can only update its cancellation_details and metadata."
        )
    before = render_subscription(store, subscription, [])
    p = req.params
    subscription["metadata"] = params.metadata(p, subscription["metadata"])
    if "description" in p:
        subscription["description"] = p["description"] or None
    if "cancel_at_period_end" in p:
        subscription["cancel_at_period_end"] = params.boolean(p, "cancel_at_period_end")
        items = invoices.items_of(store, subscription)
        at_end = items[0]["current_period_end"] if items else None
        subscription["cancel_at"] = at_end if subscription["cancel_at_period_end"] else None
    specs = p.get("items") or []
    if not isinstance(specs, list):
        raise errors.invalid("Invalid array", param="items")
    current = invoices.items_of(store, subscription)
    period = (current[0]["current_period_start"], current[0]["current_period_end"])
    for index, spec in enumerate(specs):
        if spec.get("id"):
            item = _item(store, str(spec["id"]))
            if params.boolean(spec, "deleted"):
                store.remove_item(item["id"])
                continue
            if spec.get("price"):
                item["price"] = item["plan"] = str(spec["price"])
            if "quantity" in spec:
                item["quantity"] = params.integer(spec, "quantity")
            item["metadata"] = params.metadata(spec, item["metadata"])
        else:
            _new_item(store, subscription, spec, f"items[{index}]", period)
    after = render_subscription(store, subscription, [])
    previous = {k: v for k, v in before.items() if after.get(k) != v}
    store.emit("customer.subscription.updated", after, previous_attributes=previous)
    return render_subscription(store, subscription, req.expand)


def cancel(store: Store, subscription: dict[str, Any], *, at: int) -> None:
    """End ``subscription`` now (or at ``at``) and emit ``customer.subscription.deleted``."""
    subscription["status"] = "canceled"
    subscription["canceled_at"] = subscription["canceled_at"] or at
    subscription["ended_at"] = at
    store.emit("customer.subscription.deleted", render_subscription(store, subscription, []))


def cancel_subscription(store: Store, req: Request) -> dict[str, Any]:
    subscription = _subscription(store, req.path_params["id"])
    if subscription["status"] == "canceled":
        raise errors.invalid(
            f"A canceled subscription can't be canceled again: {subscription['id']}"
        )
    cancel(store, subscription, at=store.now())
    return render_subscription(store, subscription, req.expand)


def list_items(store: Store, req: Request) -> dict[str, Any]:
    subscription = _subscription(store, str(params.required(req.params, "subscription")))
    found = params.newest_first(invoices.items_of(store, subscription))
    expand = req.expand
    return params.paginate(
        found,
        req.params,
        "/v1/subscription_items",
        lambda i: render_item(store, i, expand, "data."),
    )


def retrieve_item(store: Store, req: Request) -> dict[str, Any]:
    return render_item(store, _item(store, req.path_params["id"]), req.expand)


def create_item(store: Store, req: Request) -> dict[str, Any]:
    subscription = _subscription(store, str(params.required(req.params, "subscription")))
    current = invoices.items_of(store, subscription)
    now = store.now()
    period = (
        (current[0]["current_period_start"], current[0]["current_period_end"])
        if current
        else (now, now + 30 * 86400)
    )
    item = _new_item(store, subscription, req.params, "price", period)
    return render_item(store, item, req.expand)


def update_item(store: Store, req: Request) -> dict[str, Any]:
    item = _item(store, req.path_params["id"])
    if "quantity" in req.params:
        item["quantity"] = params.integer(req.params, "quantity")
    item["metadata"] = params.metadata(req.params, item["metadata"])
    return render_item(store, item, req.expand)


def delete_item(store: Store, req: Request) -> dict[str, Any]:
    item = _item(store, req.path_params["id"])
    store.remove_item(item["id"])
    return {"deleted": True, "id": item["id"], "object": "subscription_item"}


for _method, _path, _handler in (
    ("POST", "/v1/subscriptions", create_subscription),
    ("GET", "/v1/subscriptions", list_subscriptions),
    ("GET", "/v1/subscriptions/{id}", retrieve_subscription),
    ("POST", "/v1/subscriptions/{id}", update_subscription),
    ("DELETE", "/v1/subscriptions/{id}", cancel_subscription),
    ("GET", "/v1/subscription_items", list_items),
    ("POST", "/v1/subscription_items", create_item),
    ("GET", "/v1/subscription_items/{id}", retrieve_item),
    ("POST", "/v1/subscription_items/{id}", update_item),
    ("DELETE", "/v1/subscription_items/{id}", delete_item),
):
    router.add(_method, _path, _handler)
