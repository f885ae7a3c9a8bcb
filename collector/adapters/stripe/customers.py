"""Reading one Stripe customer: does it exist, in this account and mode."""

from __future__ import annotations

from typing import Any

import stripe

from collector.adapters.stripe.client import translate
from collector.adapters.stripe.subscriptions import as_dict


async def stripe_customer(client: stripe.StripeClient, stripe_customer_id: str) -> Any | None:
    """The customer object, or None when Stripe has no such customer (or it was deleted)."""
    try:
        found = await client.v1.customers.retrieve_async(stripe_customer_id)
    except stripe.InvalidRequestError as exc:
        if exc.http_status == 404 or exc.code == "resource_missing":
            return None
        raise translate(exc) from exc
    except stripe.StripeError as exc:
        raise translate(exc) from exc
    customer = as_dict(found)
    return None if customer.get("deleted") else customer
