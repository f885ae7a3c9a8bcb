"""The sandbox keeps items by subscription, subscriptions by customer and meter events by meter
and customer, so a request no longer scans every item of every subscription (1,000 subscribed
customers made it answer about one request a second). Every index must say what a full scan
says, after every kind of change, and periods must still renew on time.
"""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from collector.stripe_sandbox.state import Store
from tests.integration.stripe_sandbox.catalog import Starter, setup_starter
from tests.support.stripe_sandbox import Sandbox

DAY = 86400


def scanned(store: Store) -> dict[str, Any]:
    """What the indexes must hold, found the slow way."""
    items = {
        sid: [i["id"] for i in store.items.values() if i["subscription"] == sid]
        for sid in store.subscriptions
    }
    subscriptions = {
        cid: [s["id"] for s in store.subscriptions.values() if s["customer"] == cid]
        for cid in store.customers
    }
    events = {
        (e.meter_id, e.customer): [
            x.identifier
            for x in store.meter_events
            if (x.meter_id, x.customer) == (e.meter_id, e.customer)
        ]
        for e in store.meter_events
    }
    return {"items": items, "subscriptions": subscriptions, "events": events}


def indexed(store: Store) -> dict[str, Any]:
    items = {sid: [i["id"] for i in store.items_of(sid)] for sid in store.subscriptions}
    subscriptions = {cid: [s["id"] for s in store.subscriptions_of(cid)] for cid in store.customers}
    events = {
        key: [e.identifier for e in store.meter_events_of(*key)]
        for key, found in store.meter_events_by_customer.items()
        if found
    }
    return {"items": items, "subscriptions": subscriptions, "events": events}


def post(client: stripe.StripeClient, customer: str, identifier: str, now: int) -> None:
    client.v1.billing.meter_events.create(
        {
            "event_name": "mqtt_messages",
            "payload": {"stripe_customer_id": customer, "value": "7"},
            "identifier": identifier,
            "timestamp": now - 60,
        }
    )


def subscribe(client: stripe.StripeClient, customer: str, *prices: str) -> stripe.Subscription:
    return client.v1.subscriptions.create(
        {"customer": customer, "items": [{"price": p} for p in prices]}
    )


def test_sandbox_lookups_by_subscription_customer_and_meter_match_a_full_scan(
    stripe_sandbox: Sandbox,
) -> None:
    client, store = stripe_sandbox.client, stripe_sandbox.app.store
    starter = setup_starter(client)
    prices = {k: p.id for k, p in starter.prices.items()}
    other = client.v1.customers.create({"email": "ops@other.test"})
    now = stripe_sandbox.control.now()

    first = subscribe(client, starter.customer.id, prices["starter_base"], prices["device_usage"])
    second = subscribe(client, other.id, prices["starter_base"])
    third = subscribe(client, starter.customer.id, prices["mqtt_messages"])
    with pytest.raises(stripe.InvalidRequestError):
        subscribe(client, other.id, prices["mqtt_messages"], "price_missing")
    added = client.v1.subscription_items.create(
        {"subscription": second.id, "price": prices["storage_gb"]}
    )
    client.v1.subscriptions.update(
        first.id,
        {
            "items": [
                {"id": first["items"].data[0].id, "deleted": True},
                {"price": prices["storage_gb"]},
            ]
        },
    )
    client.v1.subscription_items.delete(added.id)
    for n in range(4):
        post(client, starter.customer.id if n % 2 else other.id, f"evt-{n}", now)
    meter = starter.meters["mqtt_messages"].id
    stripe_sandbox.control.error_report(meter, [{"identifier": "evt-1"}])

    assert indexed(store) == scanned(store)
    assert [i["id"] for i in store.items_of(third.id)] == [third["items"].data[0].id]
    listed = client.v1.subscriptions.list({"customer": starter.customer.id})
    assert [s.id for s in listed.data] == [third.id, first.id]
    assert [e.identifier for e in store.meter_events_of(meter, starter.customer.id)] == ["evt-3"]

    stripe_sandbox.control.reset()
    assert indexed(store) == {"items": {}, "subscriptions": {}, "events": {}}


def daily_price(client: stripe.StripeClient, starter: Starter) -> str:
    price = client.v1.prices.create(
        {
            "currency": "usd",
            "product": starter.product.id,
            "unit_amount": 100,
            "recurring": {"interval": "day"},
        }
    )
    return str(price.id)


def test_a_subscription_added_after_a_renewal_check_still_renews_on_its_own_day(
    stripe_sandbox: Sandbox,
) -> None:
    """Renewal checks skip ahead to the earliest period end they saw; a later subscription with
    a shorter period must not be left waiting for that."""
    client = stripe_sandbox.client
    starter = setup_starter(client)
    monthly = subscribe(client, starter.customer.id, starter.prices["starter_base"].id)
    client.v1.customers.retrieve(starter.customer.id)
    daily = subscribe(client, starter.customer.id, daily_price(client, starter))
    start = daily["items"].data[0].current_period_start

    stripe_sandbox.control.advance_clock(DAY + 60)
    client.v1.customers.retrieve(starter.customer.id)

    renewed = client.v1.subscriptions.retrieve(daily.id)["items"].data[0]
    assert (renewed.current_period_start, renewed.current_period_end) == (
        start + DAY,
        start + 2 * DAY,
    )
    untouched = client.v1.subscriptions.retrieve(monthly.id)["items"].data[0]
    assert untouched.current_period_start == monthly["items"].data[0].current_period_start
