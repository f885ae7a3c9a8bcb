"""A collector forwarding to the Stripe sandbox, driven step by step on a shared manual clock.

Besides the ``Harness`` this module holds what tests of billing periods need around it:
Stripe's own per-period totals read through the SDK (``Harness.billed``), Stripe's webhooks
handed over one by one and in any order (``WebhookFeed``, ``Harness.deliver``), a record of
every usage call Stripe received (``tests.support.usage_recorder``), events that Stripe
reports as failed after accepting them (``fail_after_acceptance``), and an HTTP client for the
collector's API (``api_client``).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Collection, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import httpx
from prometheus_client import CollectorRegistry

from collector.adapters.db.migrate import upgrade_async
from collector.adapters.stripe.catalog import StripeCatalog
from collector.api.app import Services, build_services, create_app
from collector.services.forwarder import Forwarder
from collector.services.principals import Role
from collector.services.stripe_setup import StripeSetup
from collector.services.subscriptions import SubscriptionItems
from collector.services.webhooks import WebhookOutcome
from collector.settings import CollectorSettings
from collector.stripe_sandbox.webhooks import sign
from common.clock import ManualClock
from common.schema import UsageReport
from tests.support.credentials import bearer
from tests.support.stripe_sandbox import (
    API_KEY,
    LEGACY_VERSION,
    Sandbox,
)

PRICE_KEYS = ("device_usage", "mqtt_messages", "storage_gb")
SUBSCRIPTION_EVENTS = frozenset(
    {
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
    }
)
METER_ERROR_EVENTS = frozenset({"v1.billing.meter.error_report_triggered"})
WEBHOOK_SECRET = "whsec_forwarding_harness"
MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class Subscription:
    """A Stripe subscription as a test sees it: whose it is, its items and its current period."""

    customer_id: str
    stripe_customer_id: str
    id: str
    items: dict[str, str]
    period_start: datetime
    period_end: datetime

    @property
    def period(self) -> tuple[datetime, datetime]:
        return (self.period_start, self.period_end)

    @classmethod
    def of(cls, customer_id: str, raw: Any) -> Subscription:
        data = raw.to_dict() if hasattr(raw, "to_dict") else dict(raw)
        items = data["items"]["data"]
        customer = data["customer"]
        return cls(
            customer_id=customer_id,
            stripe_customer_id=str(customer["id"] if isinstance(customer, dict) else customer),
            id=str(data["id"]),
            items={
                str(i["price"]["lookup_key"]): str(i["id"])
                for i in items
                if isinstance(i["price"], dict) and i["price"].get("lookup_key")
            },
            period_start=_utc(items[0]["current_period_start"]),
            period_end=_utc(items[0]["current_period_end"]),
        )


@dataclass(frozen=True)
class Webhook:
    """One event Stripe sent (or would have sent) to the webhook endpoint: its exact body."""

    event_id: str
    type: str
    payload: bytes

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.payload))

    @property
    def object_id(self) -> str | None:
        """The id of the event's object (a subscription's id for subscription events)."""
        data = self.event.get("data") or {}
        obj = data.get("object") if isinstance(data, dict) else None
        return str(obj["id"]) if isinstance(obj, dict) and "id" in obj else None


@dataclass
class WebhookFeed:
    """Stripe's webhooks in the order the sandbox emitted them, taken by a test in batches.

    The sandbox has no endpoint configured, so nothing is delivered on its own: a test takes the
    new events and delivers them in the order it wants, or drops them (a missed webhook).
    """

    sandbox: Sandbox
    seen: int = 0

    def take(self, types: Collection[str] | None = None) -> list[Webhook]:
        """Every event emitted since the last take, of ``types`` if given; the rest are dropped."""
        deliveries = list(self.sandbox.app.webhooks.deliveries)
        fresh, self.seen = deliveries[self.seen :], len(deliveries)
        return [
            Webhook(d.event_id, d.event_type, d.payload)
            for d in fresh
            if types is None or d.event_type in types
        ]

    def drop(self) -> int:
        """Forget every event emitted so far (Stripe sent them; they never arrived)."""
        return len(self.take())


@dataclass
class Harness:
    services: Services
    forwarder: Forwarder
    clock: ManualClock
    mode: str
    settings: CollectorSettings
    prices: dict[str, str] = field(default_factory=dict)
    feed: WebhookFeed | None = None

    @property
    def client(self) -> Any:
        assert self.services.stripe is not None
        return self.services.stripe.client

    async def subscribe(self, customer_id: str, extra_prices: tuple[str, ...] = ()) -> str:
        """A Stripe customer subscribed to the metered prices, linked as a webhook would."""
        subscription = await self.create_subscription(customer_id, extra_prices=extra_prices)
        return subscription.stripe_customer_id

    async def create_subscription(
        self,
        customer_id: str,
        *,
        remember: bool = True,
        stripe_customer_id: str | None = None,
        extra_prices: tuple[str, ...] = (),
    ) -> Subscription:
        """A subscription to the metered prices, for a new Stripe customer unless one is given.

        Both carry ``metadata.customer_id``. With ``remember`` the collector stores the
        subscription as the subscription webhook would; without, the collector knows nothing of
        it (the webhook Stripe sent waits in the feed).
        """
        client = self.client
        if stripe_customer_id is None:
            customer = await client.v1.customers.create_async(
                {"metadata": {"customer_id": customer_id}}
            )
            stripe_customer_id = str(customer.id)
        subscription = await client.v1.subscriptions.create_async(
            {
                "customer": stripe_customer_id,
                "items": [
                    *({"price": price} for price in extra_prices),
                    *({"price": self.prices[key]} for key in PRICE_KEYS),
                ],
                "metadata": {"customer_id": customer_id},
                "expand": ["items.data.price"],
            }
        )
        if remember:
            await SubscriptionItems.remember_with(
                self.services.links, self.clock, customer_id, stripe_customer_id, subscription
            )
        return Subscription.of(customer_id, subscription)

    async def read_subscription(self, subscription: Subscription) -> Subscription:
        """The subscription as Stripe has it now (its period moves on at each renewal)."""
        fresh = await self.client.v1.subscriptions.retrieve_async(
            subscription.id, {"expand": ["items.data.price"]}
        )
        return Subscription.of(subscription.customer_id, fresh)

    async def ingest(self, report: UsageReport) -> None:
        await self.services.ingest.store(report)

    async def report(self, report: UsageReport) -> None:
        """Ingest ``report`` a minute after its window ended (the clock never goes back)."""
        due = report.window_end + MINUTE
        if self.clock.now() < due:
            self.clock.set(due)
        await self.ingest(report)

    async def settle(self, rounds: int = 400, step: timedelta = timedelta(seconds=30)) -> None:
        """Forward until nothing is waiting, moving time on so backoffs expire."""
        for _ in range(rounds):
            await self.forwarder.drain()
            counts = await self.services.outbox.counts()
            if not counts["forwards"].get("pending") and not counts["forwards"].get("batched"):
                return
            self.clock.advance(step)
        raise AssertionError(f"forwards still waiting: {await self.services.outbox.counts()}")

    async def stripe_totals(self, customer_id: str) -> dict[str, Decimal | None]:
        result = await self.services.reconciler.reconcile(customer_id)
        return {m.metric: m.stripe_value for m in result.metrics}

    async def deliver(self, webhook: Webhook) -> WebhookOutcome:
        """Hand one webhook to the collector, signed now, as Stripe's delivery would."""
        secret = self.settings.stripe_webhook_secret
        assert secret is not None, "the harness needs stripe_webhook_secret to take webhooks"
        signature = sign(webhook.payload, secret.get_secret_value(), int(time.time()))
        return await self.services.webhooks.handle(webhook.payload, signature)

    async def deliver_webhooks(self, types: Collection[str] | None = None) -> list[WebhookOutcome]:
        """Deliver, in order, every new webhook of ``types`` (all if None); drop the others."""
        assert self.feed is not None, "pass feed=WebhookFeed(sandbox) to harness()"
        return [await self.deliver(w) for w in self.feed.take(types)]

    async def billed(
        self, subscription: Subscription, period: tuple[datetime, datetime]
    ) -> dict[str, int]:
        """What Stripe holds for ``period``, by price lookup key, read through the SDK.

        Meter modes read the meters' event summaries for the subscription's Stripe customer;
        ``usage_records`` reads the usage record summary of each item for exactly that period.
        """
        start, end = period
        if self.mode == "usage_records":
            return await self._billed_legacy(subscription, start, end)
        if start.second or start.microsecond or end.second or end.microsecond:
            raise ValueError("meter summaries need minute-aligned periods")
        meters = await StripeCatalog(self.client).meters()
        totals: dict[str, int] = {}
        for key in PRICE_KEYS:
            page = await self.client.v1.billing.meters.event_summaries.list_async(
                meters[key]["id"],
                {
                    "customer": subscription.stripe_customer_id,
                    "start_time": int(start.timestamp()),
                    "end_time": int(end.timestamp()),
                },
            )
            totals[key] = int(sum(Decimal(str(s.aggregated_value)) for s in page.data))
        return totals

    async def _billed_legacy(
        self, subscription: Subscription, start: datetime, end: datetime
    ) -> dict[str, int]:
        totals: dict[str, int] = {}
        for key in PRICE_KEYS:
            item = subscription.items[key]
            response = await self.client.raw_request_async(
                "get",
                f"/v1/subscription_items/{item}/usage_record_summaries",
                limit=100,
                stripe_version=LEGACY_VERSION,
            )
            body = self.client.deserialize(response, api_mode="V1").to_dict()
            spans = {
                (_utc(s["period"]["start"]), _utc(s["period"]["end"])): int(s["total_usage"])
                for s in body["data"]
            }
            if (start, end) not in spans:
                raise ValueError(f"item {item} has no period {start}..{end}: {sorted(spans)}")
            totals[key] = spans[(start, end)]
        return totals


@asynccontextmanager
async def harness(
    sandbox_url: str,
    clock: ManualClock,
    database_url: str,
    mode: str,
    *,
    feed: WebhookFeed | None = None,
    **overrides: Any,
) -> AsyncIterator[Harness]:
    """A collector on ``database_url`` forwarding to the sandbox; ``overrides`` are settings."""
    overrides.setdefault("stripe_webhook_secret", WEBHOOK_SECRET)
    settings = CollectorSettings(
        database_url=database_url,
        stripe_mode=mode,
        stripe_api_key=API_KEY,
        stripe_api_base=sandbox_url,
        stripe_max_rps=1000,
        stripe_backoff_cap=60,
        forwarder_enabled=False,
        **overrides,
    )
    await upgrade_async(settings.async_database_url())
    services = build_services(settings, clock=clock, registry=CollectorRegistry())
    assert services.forwarder is not None
    try:
        assert services.stripe is not None
        setup = await StripeSetup(
            StripeCatalog(services.stripe.client), settings.catalogue()
        ).apply(legacy=mode == "usage_records")
        yield Harness(services, services.forwarder, clock, mode, settings, dict(setup.prices), feed)
    finally:
        await services.close()


def hourly_report(customer_id: str, start: datetime, hour: int, **metrics: float) -> UsageReport:
    end = start + timedelta(hours=hour)
    return UsageReport(
        customer_id=customer_id,
        instance_id="cluster",
        window_start=end - timedelta(hours=1),
        window_end=end,
        metrics=metrics,
    )


def window_report(
    customer_id: str,
    window_start: datetime,
    window_end: datetime,
    metrics: dict[str, float],
    instance_id: str = "cluster",
) -> UsageReport:
    """One instance's report for any window (an old agent or an API client may send any)."""
    return UsageReport(
        customer_id=customer_id,
        instance_id=instance_id,
        window_start=window_start,
        window_end=window_end,
        metrics=metrics,
    )


def new_customer() -> str:
    return f"cust_{uuid.uuid4().hex[:10]}"


async def dead_batches(h: Harness, customer_id: str | None = None) -> list[Any]:
    return list(await h.services.outbox.batches("dead", customer_id, 1000))


async def assert_in_sync(h: Harness, customer_id: str, *, dead_allowed: bool = False) -> None:
    """The end of every period test: reconcile agrees and, unless allowed, nothing is dead."""
    reconciliation = await h.services.reconciler.reconcile(customer_id)
    assert reconciliation.in_sync, f"reconcile is not in sync: {reconciliation}"
    if not dead_allowed:
        dead = await dead_batches(h)
        assert not dead, f"dead batches: {[(b.metric, b.last_error) for b in dead]}"


def fail_after_acceptance(
    sandbox: Sandbox, identifiers: Iterable[str], code: str = "meter_event_customer_not_found"
) -> int:
    """Stripe reports accepted meter events as failed: an error report, and they are not billed.

    Stripe validates part of a meter event asynchronously; an event that fails is not counted
    and its identifier is free again. The sandbox's ``error_report`` only emits the report, so
    the events are taken out of its store here. Returns how many events were failed.
    """
    wanted = set(identifiers)
    store = sandbox.app.store
    failed = [e for e in store.meter_events if e.identifier in wanted]
    store.meter_events[:] = [e for e in store.meter_events if e.identifier not in wanted]
    by_meter: dict[str, list[dict[str, str]]] = {}
    for event in failed:
        store.identifiers.pop(event.identifier, None)
        by_meter.setdefault(event.meter_id, []).append(
            {"identifier": event.identifier, "code": code, "message": f"{code}: event not billed"}
        )
    for meter_id, errors in by_meter.items():
        sandbox.control.error_report(meter_id, errors)
    return len(failed)


@asynccontextmanager
async def api_client(h: Harness, role: str = "editor") -> AsyncIterator[httpx.AsyncClient]:
    """The collector's HTTP API over the harness's services, with an operator key of ``role``.

    No lifespan runs, so closing the client leaves the harness's services open.
    """
    issued = await h.services.credentials.create_key(Role(role), "period tests")
    app = create_app(h.settings, h.services)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=cast(Any, app)),
        base_url="http://collector.test",
        headers=bearer(issued.secret),
    ) as client:
        yield client


def field_of(entry: Any, name: str) -> Any:
    """``entry.name`` or ``entry[name]``: a status entry may be a record or a mapping."""
    if isinstance(entry, dict):
        return entry[name]
    return getattr(entry, name)


def _utc(seconds: Any) -> datetime:
    return datetime.fromtimestamp(int(seconds), UTC)
