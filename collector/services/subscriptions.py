"""Subscription items by price lookup key, cached in the database and refreshed by webhooks."""

from __future__ import annotations

from typing import Any

import stripe
import structlog

from collector.adapters.db.links import LinkStore
from collector.adapters.stripe.subscriptions import active_subscription, as_dict, items_of
from collector.errors import CustomerNotLinked, StripePermanent, StripeTransient
from common.clock import Clock

log = structlog.get_logger("collector.subscriptions")


class SubscriptionItems:
    def __init__(self, client: stripe.StripeClient, links: LinkStore, clock: Clock) -> None:
        self._client = client
        self._links = links
        self._clock = clock

    async def resolve(self, customer_id: str, lookup_key: str) -> str:
        """The subscription item billing ``lookup_key`` for the customer (legacy usage records)."""
        cached = await self._links.item(customer_id, lookup_key)
        if cached is not None:
            return cached.subscription_item_id
        await self.refresh(customer_id)
        fresh = await self._links.item(customer_id, lookup_key)
        if fresh is None:
            raise StripePermanent(
                f"the active subscription of customer {customer_id!r} has no item whose price has "
                f"lookup key {lookup_key!r}; add the price to the subscription, then retry"
            )
        return fresh.subscription_item_id

    async def refresh(self, customer_id: str) -> Any | None:
        link = await self._links.get(customer_id)
        if link is None:
            raise CustomerNotLinked(f"customer {customer_id!r} is not linked to Stripe")
        subscription = await active_subscription(self._client, link.stripe_customer_id)
        if subscription is not None:
            await self.remember(customer_id, link.stripe_customer_id, subscription)
        return subscription

    async def remember(self, customer_id: str, stripe_customer_id: str, subscription: Any) -> None:
        await self.remember_with(
            self._links, self._clock, customer_id, stripe_customer_id, subscription
        )

    @staticmethod
    async def remember_with(
        links: LinkStore, clock: Clock, customer_id: str, stripe_customer_id: str, raw: Any
    ) -> None:
        """Store a subscription's id, status, items and periods (from the API or a webhook)."""
        subscription = as_dict(raw)
        now = clock.now()
        await links.link(
            customer_id,
            stripe_customer_id,
            now,
            subscription_id=subscription["id"],
            subscription_status=subscription.get("status"),
        )
        await links.replace_items(customer_id, items_of(subscription), now)


async def link_customer(
    links: LinkStore,
    clock: Clock,
    customer_id: str,
    stripe_customer_id: str,
    items: SubscriptionItems | None,
) -> Any | None:
    """Link a customer to Stripe; with Stripe configured, read its subscription's items and period.

    Returns the active subscription, or ``None`` when there is none yet, Stripe is not configured
    or cannot be read now: the link stands either way, and the subscription webhook records the
    period later.
    """
    await links.link(customer_id, stripe_customer_id, clock.now())
    if items is None:
        return None
    try:
        return await items.refresh(customer_id)
    except (StripeTransient, StripePermanent) as exc:
        log.warning(
            "linked without reading the subscription", customer_id=customer_id, error=exc.detail
        )
        return None
