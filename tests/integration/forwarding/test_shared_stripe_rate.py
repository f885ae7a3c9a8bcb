"""Two collector replicas on one PostgreSQL forward to Stripe: together they keep to MAX_RPS.

The sandbox answers 429 beyond ``COLLECTOR_STRIPE_MAX_RPS`` calls in any second of real time,
and its call log says when each call arrived. Each replica alone would stay under the limit;
only a limit shared through the database keeps both together under it. This test runs on the
real clock (the database's), so it takes about ``CALLS / RATE`` seconds.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from collector.adapters.db.migrate import upgrade_async
from collector.adapters.stripe.catalog import StripeCatalog
from collector.api.app import Services, build_services
from collector.services.stripe_setup import StripeSetup
from collector.services.subscriptions import SubscriptionItems
from collector.settings import CollectorSettings
from common.clock import SystemClock
from common.schema import UsageReport
from tests.support.stripe_sandbox import API_KEY, running_sandbox

pytestmark = pytest.mark.postgres
RATE = 5
CUSTOMERS = 8
PRICE_KEYS = ("device_usage", "mqtt_messages", "storage_gb")


def stripe_calls(services: Services, outcome: str) -> float:
    value = services.telemetry.registry.get_sample_value(
        "usage_collector_stripe_calls_total", {"mode": "meter_events", "outcome": outcome}
    )
    return value or 0.0


async def forward_until_sent(replicas: list[Services]) -> None:
    """Run every replica's outbox worker, as ``serve`` does, until nothing waits (bounded)."""
    stop = asyncio.Event()
    workers = []
    for replica in replicas:
        assert replica.forwarder is not None
        workers.append(asyncio.create_task(replica.forwarder.run(stop)))
    try:
        async with asyncio.timeout(120):
            while True:
                counts = (await replicas[0].outbox.counts())["forwards"]
                if not counts.get("pending") and not counts.get("batched"):
                    break
                await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.gather(*workers)


async def test_two_replicas_together_never_send_stripe_more_than_max_rps(
    postgres_url: str,
) -> None:
    with running_sandbox(SystemClock(), seed=3) as sandbox:
        settings = CollectorSettings(
            database_url=postgres_url,
            stripe_mode="meter_events",
            stripe_api_key=API_KEY,
            stripe_api_base=sandbox.url,
            stripe_max_rps=RATE,
            stripe_coalesce=False,
            stripe_concurrency=4,
            forwarder_enabled=False,
            forwarder_idle_sleep=0.05,
        )
        await upgrade_async(settings.async_database_url())
        replicas = [build_services(settings, registry=CollectorRegistry()) for _ in range(2)]
        try:
            first = replicas[0]
            assert first.stripe is not None
            client = first.stripe.client
            setup = await StripeSetup(StripeCatalog(client), settings.catalogue()).apply()
            prices = dict(setup.prices)
            now = int(time.time())
            sandbox.control.set_clock(now - 86400)
            for index in range(CUSTOMERS):
                customer_id = f"cust-shared-{index}"
                customer = await client.v1.customers.create_async(
                    {"metadata": {"customer_id": customer_id}}
                )
                subscription = await client.v1.subscriptions.create_async(
                    {
                        "customer": customer.id,
                        "items": [{"price": prices[key]} for key in PRICE_KEYS],
                        "metadata": {"customer_id": customer_id},
                        "expand": ["items.data.price"],
                    }
                )
                await SubscriptionItems.remember_with(
                    first.links, SystemClock(), customer_id, str(customer.id), subscription
                )
            sandbox.control.set_clock(now)
            end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
            for index in range(CUSTOMERS):
                await first.ingest.store(
                    UsageReport(
                        customer_id=f"cust-shared-{index}",
                        instance_id="cluster",
                        window_start=end - timedelta(hours=1),
                        window_end=end,
                        metrics={"devices": 3, "mqtt_messages": 10, "storage_gb": 1.5},
                    )
                )
            sandbox.control.faults(rate_limit_per_second=RATE)
            calls_before = len(sandbox.control.calls())
            await forward_until_sent(replicas)
            calls = sandbox.control.calls()[calls_before:]
            sent = [stripe_calls(replica, "ok") for replica in replicas]
            retried = [stripe_calls(replica, "retry") for replica in replicas]
        finally:
            for replica in replicas:
                await replica.close()

    usage = [c for c in calls if "meter_events" in c["path"]]
    assert [c for c in calls if c["status"] == 429] == []
    assert retried == [0.0, 0.0]
    assert len(usage) == CUSTOMERS * 3 == sum(sent)
    assert all(count > 0 for count in sent), sent
    arrivals = sorted(c["monotonic"] for c in calls)
    for i, start in enumerate(arrivals):
        within = sum(1 for t in arrivals[i:] if t - start < 1.0)
        assert within <= RATE, (start, within)
