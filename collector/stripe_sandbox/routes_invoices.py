"""Invoices: the upcoming-invoice preview and the invoices the billing cycle produced."""

from __future__ import annotations

from typing import Any

from collector.stripe_sandbox import errors, invoices, params, periods
from collector.stripe_sandbox.http import Request, Router
from collector.stripe_sandbox.state import Store

router = Router()


def create_preview(store: Store, req: Request) -> dict[str, Any]:
    """The next invoice: metered usage of the current period plus next period's licensed fees."""
    p = req.params
    customer_id = p.get("customer")
    subscription_id = p.get("subscription")
    if not customer_id and not subscription_id:
        raise errors.missing_param("customer")
    if subscription_id:
        subscription = store.subscriptions.get(str(subscription_id))
        if subscription is None:
            raise errors.no_such("subscription", str(subscription_id), "subscription")
        if customer_id and subscription["customer"] != customer_id:
            raise errors.invalid(
                "The subscription does not belong to that customer.", param="subscription"
            )
    else:
        if str(customer_id) not in store.customers:
            raise errors.no_such("customer", str(customer_id), "customer")
        live = [
            s
            for s in params.newest_first(store.subscriptions_of(str(customer_id)))
            if s["status"] != "canceled"
        ]
        if not live:
            raise errors.invalid(
                f"No upcoming invoices for customer: {customer_id}",
                code="invoice_upcoming_none",
            )
        subscription = live[0]
    if subscription["status"] == "canceled":
        raise errors.invalid(
            f"No upcoming invoices for subscription: {subscription['id']}",
            code="invoice_upcoming_none",
        )
    items = invoices.items_of(store, subscription)
    if not items:
        raise errors.invalid("The subscription has no items.", code="invoice_upcoming_none")
    start, end = items[0]["current_period_start"], items[0]["current_period_end"]
    licensed = None
    if not subscription["cancel_at_period_end"]:
        after = periods.next_end(
            subscription["billing_cycle_anchor"], periods.recurring_of(store, subscription), end
        )
        licensed = (end, after)
    preview = invoices.build(
        store,
        subscription,
        invoice_id=None,
        usage_period=(start, end),
        licensed_period=licensed,
        billing_reason="upcoming",
        status="draft",
    )
    return invoices.render(store, preview, req.expand)


def retrieve_invoice(store: Store, req: Request) -> dict[str, Any]:
    found = store.invoices.get(req.path_params["id"])
    if found is None:
        raise errors.no_such("invoice", req.path_params["id"])
    return invoices.render(store, found, req.expand)


def list_invoices(store: Store, req: Request) -> dict[str, Any]:
    p = req.params
    items = params.newest_first(store.invoices.values())
    for name in ("customer", "subscription", "status"):
        if p.get(name):
            items = [i for i in items if i[name] == p[name]]
    return params.paginate(items, p, "/v1/invoices")


router.add("POST", "/v1/invoices/create_preview", create_preview)
router.add("GET", "/v1/invoices", list_invoices)
router.add("GET", "/v1/invoices/{id}", retrieve_invoice)
