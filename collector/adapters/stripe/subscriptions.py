"""Reading a customer's subscription and its items from Stripe."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import stripe

from collector.adapters.db.links import Item
from collector.adapters.stripe.client import translate


def _time(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    return datetime.fromtimestamp(int(value), UTC)


def as_dict(value: Any) -> dict[str, Any]:
    """A plain dict of an SDK object or of a webhook's decoded JSON."""
    if isinstance(value, stripe.StripeObject):
        return value.to_dict()
    return dict(value)


def items_of(raw: Any) -> list[Item]:
    """Each item of a subscription object (SDK object or webhook dict) that has a lookup key."""
    subscription = as_dict(raw)
    items = subscription["items"]["data"] if subscription.get("items") else []
    result = []
    for item in items:
        price = item.get("price") or {}
        key = price.get("lookup_key") if isinstance(price, dict) else None
        if not key:
            continue
        start = item.get("current_period_start") or subscription.get("current_period_start")
        end = item.get("current_period_end") or subscription.get("current_period_end")
        result.append(Item(key, item["id"], price["id"], _time(start), _time(end)))
    return result


async def active_subscription(client: stripe.StripeClient, stripe_customer_id: str) -> Any | None:
    """The customer's newest active (or trialing) subscription, with item prices expanded."""
    try:
        page = await client.v1.subscriptions.list_async(
            {
                "customer": stripe_customer_id,
                "status": "all",
                "limit": 20,
                "expand": ["data.items.data.price"],
            }
        )
    except stripe.StripeError as exc:
        raise translate(exc) from exc
    subscriptions = [as_dict(s) for s in page.data]
    live = [s for s in subscriptions if s.get("status") in ("active", "trialing", "past_due")]
    return max(live, key=lambda s: s.get("created") or 0) if live else None
