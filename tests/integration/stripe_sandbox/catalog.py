"""The seed's Starter plan, set up through the SDK, shared by the sandbox tests."""

from __future__ import annotations

from dataclasses import dataclass

import stripe


@dataclass
class Starter:
    customer: stripe.Customer
    product: stripe.Product
    meters: dict[str, stripe.billing.Meter]
    prices: dict[str, stripe.Price]


def setup_starter(client: stripe.StripeClient) -> Starter:
    """Starter: $29 base, device_usage graduated (5 free, then $5), mqtt and storage meters."""
    customer = client.v1.customers.create(
        {"email": "ops@acme.test", "metadata": {"customer_id": "acme"}}
    )
    product = client.v1.products.create({"name": "IoT Starter"})
    meters = {
        name: client.v1.billing.meters.create(
            {
                "display_name": name,
                "event_name": name,
                "default_aggregation": {"formula": formula},
            }
        )
        for name, formula in (
            ("device_usage", "last"),
            ("mqtt_messages", "sum"),
            ("storage_gb", "last"),
        )
    }
    monthly = {"interval": "month"}
    prices = {
        "starter_base": client.v1.prices.create(
            {
                "currency": "usd",
                "product": product.id,
                "unit_amount": 2900,
                "recurring": monthly,
                "lookup_key": "starter_base",
            }
        ),
        "device_usage": client.v1.prices.create(
            {
                "currency": "usd",
                "product": product.id,
                "billing_scheme": "tiered",
                "tiers_mode": "graduated",
                "tiers": [{"up_to": 5, "unit_amount": 0}, {"up_to": "inf", "unit_amount": 500}],
                "recurring": {
                    **monthly,
                    "usage_type": "metered",
                    "meter": meters["device_usage"].id,
                },
                "lookup_key": "device_usage",
            }
        ),
        "mqtt_messages": client.v1.prices.create(
            {
                "currency": "usd",
                "product": product.id,
                "unit_amount": 10,
                "transform_quantity": {"divide_by": 1000, "round": "up"},
                "recurring": {
                    **monthly,
                    "usage_type": "metered",
                    "meter": meters["mqtt_messages"].id,
                },
                "lookup_key": "mqtt_messages",
            }
        ),
        "storage_gb": client.v1.prices.create(
            {
                "currency": "usd",
                "product": product.id,
                "unit_amount": 50,
                "recurring": {**monthly, "usage_type": "metered", "meter": meters["storage_gb"].id},
                "lookup_key": "storage_gb",
            }
        ),
    }
    return Starter(customer, product, meters, prices)


def subscribe(client: stripe.StripeClient, starter: Starter, *keys: str) -> stripe.Subscription:
    keys = keys or ("starter_base", "device_usage")
    return client.v1.subscriptions.create(
        {
            "customer": starter.customer.id,
            "items": [{"price": starter.prices[key].id} for key in keys],
            "metadata": {"customer_id": "acme"},
        }
    )
