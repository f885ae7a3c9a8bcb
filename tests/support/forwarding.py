"""A collector forwarding to the Stripe sandbox, driven step by step on a shared manual clock."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from prometheus_client import CollectorRegistry

from collector.adapters.db.migrate import upgrade_async
from collector.adapters.stripe.catalog import StripeCatalog
from collector.api.app import Services, build_services
from collector.services.forwarder import Forwarder
from collector.services.stripe_setup import StripeSetup
from collector.services.subscriptions import SubscriptionItems
from collector.settings import CollectorSettings
from common.clock import ManualClock
from common.schema import UsageReport
from tests.support.stripe_sandbox import API_KEY

PRICE_KEYS = ("device_usage", "mqtt_messages", "storage_gb")


@dataclass
class Harness:
    services: Services
    forwarder: Forwarder
    clock: ManualClock
    mode: str
    settings: CollectorSettings
    prices: dict[str, str] = field(default_factory=dict)

    async def subscribe(self, customer_id: str, extra_prices: tuple[str, ...] = ()) -> str:
        """A Stripe customer subscribed to the metered prices, linked as a webhook would."""
        assert self.services.stripe is not None
        client = self.services.stripe.client
        customer = await client.v1.customers.create_async(
            {"metadata": {"customer_id": customer_id}}
        )
        subscription = await client.v1.subscriptions.create_async(
            {
                "customer": customer.id,
                "items": [
                    *({"price": price} for price in extra_prices),
                    *({"price": self.prices[key]} for key in PRICE_KEYS),
                ],
                "metadata": {"customer_id": customer_id},
                "expand": ["items.data.price"],
            }
        )
        await SubscriptionItems.remember_with(
            self.services.links, self.clock, customer_id, customer.id, subscription
        )
        return str(customer.id)

    async def ingest(self, report: UsageReport) -> None:
        await self.services.ingest.store(report)

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


@asynccontextmanager
async def harness(
    sandbox_url: str, clock: ManualClock, database_url: str, mode: str, **overrides: Any
) -> AsyncIterator[Harness]:
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
        yield Harness(services, services.forwarder, clock, mode, settings, dict(setup.prices))
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


def new_customer() -> str:
    return f"cust_{uuid.uuid4().hex[:10]}"
