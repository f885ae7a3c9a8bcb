"""Catalogue setup through the SDK: customers, products, prices with lookup keys, meters."""

from __future__ import annotations

import pytest
import stripe

from tests.integration.stripe_sandbox.catalog import setup_starter, subscribe
from tests.support.stripe_sandbox import LEGACY_VERSION, Sandbox


def test_setup_is_found_again_by_lookup_key_and_event_name(stripe_sandbox: Sandbox) -> None:
    client = stripe_sandbox.client
    starter = setup_starter(client)

    found = client.v1.prices.list({"lookup_keys": ["device_usage", "storage_gb"], "active": True})
    meters = client.v1.billing.meters.list()

    assert {p.lookup_key for p in found.data} == {"device_usage", "storage_gb"}
    by_event = {m.event_name: m for m in meters.data}
    assert by_event["device_usage"].default_aggregation.formula == "last"
    assert by_event["mqtt_messages"].default_aggregation.formula == "sum"
    mqtt = client.v1.prices.retrieve(starter.prices["mqtt_messages"].id)
    assert mqtt.recurring.meter == starter.meters["mqtt_messages"].id
    assert mqtt.transform_quantity.divide_by == 1000
    assert mqtt.transform_quantity.round == "up"


def test_tiers_are_returned_only_when_expanded(stripe_sandbox: Sandbox) -> None:
    client = stripe_sandbox.client
    starter = setup_starter(client)
    price_id = starter.prices["device_usage"].id

    plain = client.v1.prices.retrieve(price_id)
    expanded = client.v1.prices.retrieve(price_id, {"expand": ["tiers"]})

    assert "tiers" not in plain.to_dict()
    assert [t.up_to for t in expanded.tiers] == [5, None]
    assert expanded.tiers_mode == "graduated"


def test_lookup_key_in_use_is_refused_unless_transferred(stripe_sandbox: Sandbox) -> None:
    client = stripe_sandbox.client
    starter = setup_starter(client)
    params = {
        "currency": "usd",
        "product": starter.product.id,
        "unit_amount": 3900,
        "recurring": {"interval": "month"},
        "lookup_key": "starter_base",
    }

    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.prices.create(params)
    moved = client.v1.prices.create({**params, "transfer_lookup_key": True})

    assert refused.value.param == "lookup_key"
    assert client.v1.prices.list({"lookup_keys": ["starter_base"]}).data[0].id == moved.id
    assert client.v1.prices.retrieve(starter.prices["starter_base"].id).lookup_key is None


def test_metered_price_needs_a_meter_unless_on_a_legacy_version(stripe_sandbox: Sandbox) -> None:
    client = stripe_sandbox.client
    product = client.v1.products.create({"name": "Legacy"})
    params = {
        "currency": "usd",
        "product": product.id,
        "unit_amount": 500,
        "recurring": {"interval": "month", "usage_type": "metered", "aggregate_usage": "max"},
    }

    with pytest.raises(stripe.InvalidRequestError) as current:
        client.v1.prices.create(params)
    legacy = client.v1.prices.create(params, {"stripe_version": LEGACY_VERSION})

    assert current.value.code == "parameter_unknown"
    assert legacy.recurring["aggregate_usage"] == "max"


def test_customers_are_found_by_metadata_search(stripe_sandbox: Sandbox) -> None:
    client = stripe_sandbox.client
    setup_starter(client)
    client.v1.customers.create({"metadata": {"customer_id": "globex"}})

    found = client.v1.customers.search({"query": "metadata['customer_id']:'acme'"})

    assert [c.metadata["customer_id"] for c in found.data] == ["acme"]


def test_subscription_items_carry_their_current_period(stripe_sandbox: Sandbox) -> None:
    client = stripe_sandbox.client
    starter = setup_starter(client)
    subscription = subscribe(client, starter)

    items = client.v1.subscription_items.list({"subscription": subscription.id})
    listed = client.v1.subscriptions.list({"customer": starter.customer.id})

    assert len(items.data) == 2
    start, end = items.data[0].current_period_start, items.data[0].current_period_end
    assert start == int(stripe_sandbox.clock.now().timestamp())
    assert end - start == 31 * 86400  # March has 31 days
    assert listed.data[0].id == subscription.id
    assert listed.data[0].metadata["customer_id"] == "acme"


def test_list_pagination_walks_every_object(stripe_sandbox: Sandbox) -> None:
    client = stripe_sandbox.client
    created = {client.v1.customers.create({"name": f"c{i}"}).id for i in range(7)}

    seen = {c.id for c in client.v1.customers.list({"limit": 3}).auto_paging_iter()}

    assert seen == created


def test_unknown_objects_are_resource_missing(stripe_sandbox: Sandbox) -> None:
    with pytest.raises(stripe.InvalidRequestError) as missing:
        stripe_sandbox.client.v1.customers.retrieve("cus_nope")

    assert missing.value.http_status == 404
    assert missing.value.code == "resource_missing"


def test_a_bad_api_key_is_an_authentication_error(stripe_sandbox: Sandbox) -> None:
    client = stripe_sandbox.new_client(api_key="pk_test_wrong")

    with pytest.raises(stripe.AuthenticationError):
        client.v1.customers.list()
