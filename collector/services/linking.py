"""Linking a collector customer to a Stripe customer, checked before anything is stored.

Three rules keep a link from billing the wrong customer:

- The Stripe customer must exist in the account and mode of ``COLLECTOR_STRIPE_API_KEY``. A
  missing one is refused (422); when Stripe cannot be asked, the link is refused too (502),
  since a typo would otherwise dead-letter every batch later. Without an API key nothing can be
  checked: the link is stored and the answer says so.
- Relinking a customer to another Stripe customer moves its billing, so it needs ``replace``.
- One Stripe customer backing two collector customers makes their ``set`` values overwrite each
  other on a ``last`` meter, so it needs ``share``.

The answer says whether the subscription and its current period were read, and if not, why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import stripe
import structlog

from collector.adapters.db.links import LinkStore
from collector.adapters.stripe.customers import stripe_customer
from collector.errors import (
    AlreadyLinked,
    StripeCustomerInUse,
    StripeCustomerMissing,
    StripePermanent,
    StripeTransient,
)
from collector.services.periods import resolve
from collector.services.subscriptions import SubscriptionItems, link_customer
from common.billing_periods import PeriodBounds
from common.clock import Clock

log = structlog.get_logger("collector.linking")

SubscriptionState = Literal["read", "none", "unreadable", "not_configured"]


@dataclass(frozen=True)
class LinkResult:
    customer_id: str
    stripe_customer_id: str
    replaced: str | None
    """The Stripe customer the link pointed to before, when this was a relink."""
    stripe_checked: bool
    subscription: SubscriptionState
    subscription_id: str | None
    period: PeriodBounds | None
    detail: str


class LinkingService:
    def __init__(
        self,
        links: LinkStore,
        clock: Clock,
        items: SubscriptionItems | None,
        client: stripe.StripeClient | None,
    ) -> None:
        self._links = links
        self._clock = clock
        self._items = items
        self._client = client

    async def link(
        self,
        customer_id: str,
        stripe_customer_id: str,
        *,
        replace: bool = False,
        share: bool = False,
        actor: str = "operator",
    ) -> LinkResult:
        """Check the rules, then store the link with its subscription in one transaction."""
        existing = await self._links.get(customer_id)
        replaced = None
        if existing is not None and existing.stripe_customer_id != stripe_customer_id:
            if not replace:
                raise AlreadyLinked(
                    f"customer {customer_id!r} is linked to {existing.stripe_customer_id}; "
                    "relinking moves its billing to the new Stripe customer: pass replace=true "
                    "(CLI: --force) to do it",
                    field="stripe_customer_id",
                )
            replaced = existing.stripe_customer_id
        await self._check_not_shared(customer_id, stripe_customer_id, share)
        checked = await self._check_exists(stripe_customer_id)
        subscription = await self._apply(customer_id, stripe_customer_id, actor)
        state, detail = subscription
        link = await self._links.get(customer_id)
        periods = await self._links.periods(customer_id, link) if link else []
        current = resolve(self._clock.now(), link, periods) if link else None
        period = PeriodBounds(start=current.start, end=current.end) if current else None
        if replaced:
            log.warning(
                "customer_relinked",
                customer_id=customer_id,
                stripe_customer_id=stripe_customer_id,
                replaced=replaced,
                by=actor,
            )
        log.info(
            "customer_linked",
            customer_id=customer_id,
            stripe_customer_id=stripe_customer_id,
            subscription=state,
            by=actor,
        )
        return LinkResult(
            customer_id,
            stripe_customer_id,
            replaced,
            checked,
            state,
            link.subscription_id if link else None,
            period,
            detail,
        )

    async def _check_not_shared(
        self, customer_id: str, stripe_customer_id: str, share: bool
    ) -> None:
        others = [
            link.customer_id
            for link in await self._links.all()
            if link.stripe_customer_id == stripe_customer_id and link.customer_id != customer_id
        ]
        if others and not share:
            raise StripeCustomerInUse(
                f"{stripe_customer_id} already backs collector customer {others[0]!r}; two "
                "customers on one Stripe customer overwrite each other's device counts on a "
                "`last` meter: pass share=true (CLI: --force) only if that is intended",
                field="stripe_customer_id",
            )

    async def _check_exists(self, stripe_customer_id: str) -> bool:
        if self._client is None:
            return False
        try:
            found = await stripe_customer(self._client, stripe_customer_id)
        except (StripeTransient, StripePermanent) as exc:
            raise StripeTransient(
                f"cannot check {stripe_customer_id} in Stripe now ({exc.detail}); nothing was "
                "linked, try again",
                status=getattr(exc, "status", None),
            ) from exc
        if found is None:
            raise StripeCustomerMissing(
                f"Stripe has no customer {stripe_customer_id} in the account and mode of "
                "COLLECTOR_STRIPE_API_KEY (a test-mode key sees only test customers)",
                field="stripe_customer_id",
            )
        return True

    async def _apply(
        self, customer_id: str, stripe_customer_id: str, actor: str
    ) -> tuple[SubscriptionState, str]:
        read = await link_customer(
            self._links, self._clock, customer_id, stripe_customer_id, self._items, actor=actor
        )
        if self._items is None:
            return "not_configured", (
                "no COLLECTOR_STRIPE_API_KEY: the subscription and its billing period are read "
                "once one is set; usage waits until then"
            )
        if read.unreadable is not None:
            return "unreadable", (
                f"the subscription could not be read ({read.unreadable}); usage waits, and the "
                "forwarder reads it again every COLLECTOR_STRIPE_PERIOD_REFRESH"
            )
        if read.subscription is None:
            return "none", (
                "the Stripe customer has no live subscription: usage bills in UTC calendar "
                "months until one starts"
            )
        return "read", f"subscription {read.subscription['id']}: items and billing periods stored"
