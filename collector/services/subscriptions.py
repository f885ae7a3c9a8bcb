"""Subscription items by price lookup key, cached in the database and refreshed by webhooks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stripe
import structlog

from collector.adapters.db.links import LinkChange, LinkStore, SubscriptionFacts
from collector.adapters.stripe.subscriptions import active_subscription, as_dict, items_of
from collector.errors import CustomerNotLinked, StripePermanent, StripeTransient
from collector.services.periods import becomes_current
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

    async def refresh(self, customer_id: str, *, actor: str = "collector") -> Any | None:
        """Read the customer's live subscription and apply it; None when it has none."""
        link = await self._links.get(customer_id)
        if link is None:
            raise CustomerNotLinked(f"customer {customer_id!r} is not linked to Stripe")
        subscription = await active_subscription(self._client, link.stripe_customer_id)
        await self._links.apply(
            LinkChange(customer_id, link.stripe_customer_id, facts_of(subscription), actor=actor),
            becomes_current,
            self._clock.now(),
        )
        return subscription

    async def read(self, stripe_customer_id: str) -> tuple[Any | None, SubscriptionFacts]:
        """The live subscription of a Stripe customer and what it says of billing periods."""
        subscription = await active_subscription(self._client, stripe_customer_id)
        return subscription, facts_of(subscription)

    @staticmethod
    async def remember_with(
        links: LinkStore,
        clock: Clock,
        customer_id: str,
        stripe_customer_id: str,
        raw: Any,
        *,
        event_at: datetime | None = None,
        actor: str = "stripe",
    ) -> bool:
        """Apply a subscription seen in a webhook or the API; True if it is now the current one."""
        outcome = await links.apply(
            LinkChange(
                customer_id, stripe_customer_id, facts_of(raw), event_at=event_at, actor=actor
            ),
            becomes_current,
            clock.now(),
        )
        return outcome.current


def facts_of(raw: Any | None) -> SubscriptionFacts:
    """A subscription object (SDK or webhook JSON) as facts; None: no live subscription."""
    if raw is None:
        return SubscriptionFacts(None, "none", None)
    subscription = as_dict(raw)
    items = tuple(items_of(subscription))
    periods = tuple(
        sorted({(i.period_start, i.period_end) for i in items if i.period_start and i.period_end})
    )
    created = subscription.get("created")
    return SubscriptionFacts(
        subscription["id"],
        subscription.get("status"),
        datetime.fromtimestamp(int(created), UTC) if created else None,
        items,
        periods,
    )


@dataclass(frozen=True)
class LinkRead:
    """What linking learned of the subscription: it (or None), and why it is unknown, if so."""

    subscription: Any | None
    unreadable: str | None = None


async def link_customer(
    links: LinkStore,
    clock: Clock,
    customer_id: str,
    stripe_customer_id: str,
    items: SubscriptionItems | None,
    *,
    actor: str = "operator",
) -> LinkRead:
    """An operator links a customer to Stripe, with its subscription read first when possible.

    Link, items and billing periods are stored in one transaction, so the forwarder never sees
    the link without its periods. When Stripe is not configured or cannot be read now, the link
    stands with its period unknown: usage waits, and the forwarder reads the subscription later.
    """
    subscription = None
    facts: SubscriptionFacts | None = None
    unreadable = None
    if items is not None:
        try:
            subscription, facts = await items.read(stripe_customer_id)
        except (StripeTransient, StripePermanent) as exc:
            unreadable = exc.detail
            log.warning(
                "linked without reading the subscription; usage waits until it is read",
                customer_id=customer_id,
                error=exc.detail,
            )
    await links.apply(
        LinkChange(customer_id, stripe_customer_id, facts, explicit=True, actor=actor),
        becomes_current,
        clock.now(),
    )
    return LinkRead(subscription, unreadable)
