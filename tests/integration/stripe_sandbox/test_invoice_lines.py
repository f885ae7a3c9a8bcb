"""Invoice lines are worded as Stripe words them: after the product, with the unit price."""

from __future__ import annotations

import stripe

from tests.integration.stripe_sandbox.catalog import setup_starter, subscribe
from tests.support.stripe_sandbox import Sandbox

TIMES = "\N{MULTIPLICATION SIGN}"


def metered_price(client: stripe.StripeClient, metric: str, **price: object) -> stripe.Price:
    """A metered price on a product of its own, as `stripe setup` creates them."""
    meter = client.v1.billing.meters.create(
        {"display_name": metric, "event_name": metric, "default_aggregation": {"formula": "sum"}}
    )
    return client.v1.prices.create(
        {
            "currency": "usd",
            "product_data": {"name": f"IoT platform usage: {metric}"},
            "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id},
            "lookup_key": metric,
            **price,
        }
    )


def test_invoice_preview_lines_name_their_metric(stripe_sandbox: Sandbox) -> None:
    client = stripe_sandbox.client
    customer = client.v1.customers.create({"name": "acme"})
    prices = {
        "devices": metered_price(client, "devices", unit_amount=500),
        "mqtt_messages": metered_price(
            client,
            "mqtt_messages",
            unit_amount=10,
            transform_quantity={"divide_by": 1000, "round": "up"},
        ),
        "api_requests": metered_price(client, "api_requests", unit_amount_decimal="0.5"),
    }
    client.v1.subscriptions.create(
        {"customer": customer.id, "items": [{"price": p.id} for p in prices.values()]}
    )
    for metric, value in (("devices", "8"), ("mqtt_messages", "1501"), ("api_requests", "30")):
        client.v1.billing.meter_events.create(
            {"event_name": metric, "payload": {"stripe_customer_id": customer.id, "value": value}}
        )

    preview = client.v1.invoices.create_preview({"customer": customer.id})

    lines = {line.pricing.price_details.price: line for line in preview.lines.data}
    assert {lines[p.id].description for p in prices.values()} == {
        f"8 {TIMES} IoT platform usage: devices (at $5.00 / month)",
        f"2 {TIMES} IoT platform usage: mqtt_messages (at $0.10 / month)",
        f"30 {TIMES} IoT platform usage: api_requests (at $0.005 / month)",
    }
    messages = lines[prices["mqtt_messages"].id]
    assert (messages.quantity, messages.amount) == (2, 20)


def test_a_licensed_line_reads_like_stripes_and_a_tiered_one_has_no_unit_price(
    stripe_sandbox: Sandbox,
) -> None:
    client = stripe_sandbox.client
    starter = setup_starter(client)
    subscribe(client, starter)

    preview = client.v1.invoices.create_preview({"customer": starter.customer.id})

    descriptions = sorted(line.description for line in preview.lines.data)
    assert descriptions == [
        f"0 {TIMES} IoT Starter",
        f"1 {TIMES} IoT Starter (at $29.00 / month)",
    ]


def test_line_prices_expand_to_price_objects_with_their_lookup_key(
    stripe_sandbox: Sandbox,
) -> None:
    client = stripe_sandbox.client
    starter = setup_starter(client)
    subscription = subscribe(client, starter, "starter_base", "mqtt_messages")

    plain = client.v1.invoices.create_preview({"subscription": subscription.id})
    expanded = client.v1.invoices.create_preview(
        {
            "subscription": subscription.id,
            "expand": ["lines.data.pricing.price_details.price"],
        }
    )

    assert all(isinstance(line.pricing.price_details.price, str) for line in plain.lines.data)
    keys = {line.pricing.price_details.price.lookup_key for line in expanded.lines.data}
    assert keys == {"starter_base", "mqtt_messages"}
