"""`stripe setup` gives every catalogue metric, extra metrics included, its meter and price."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from collector.adapters.db.migrate import upgrade
from collector.cli import main
from common.catalogue import MetricCatalogue
from common.clock import ManualClock
from tests.support.forwarding import dead_batches, harness, hourly_report
from tests.support.stripe_sandbox import API_KEY, LEGACY_VERSION, Sandbox

EXTRA = [
    {
        "name": "sms_sent",
        "unit": "message",
        "kind": "counter",
        "semantics": "increment",
        "price_lookup_key": "sms_sent",
        "meter_event_name": "sms_sent",
    },
    {
        "name": "gpu_hours",
        "unit": "hour",
        "kind": "gauge",
        "semantics": "max",
        "price_lookup_key": "gpu_hours_peak",
        "meter_event_name": "gpu_hours",
        "rounding": "ceil",
    },
]


@pytest.fixture
def env(stripe_sandbox: Sandbox, tmp_path: Path) -> dict[str, str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 's.db'}"
    upgrade(url)
    return {
        "COLLECTOR_DATABASE_URL": url,
        "COLLECTOR_STRIPE_API_KEY": API_KEY,
        "COLLECTOR_STRIPE_API_BASE": stripe_sandbox.url,
        "COLLECTOR_LOG_JSON": "false",
        "COLLECTOR_EXTRA_METRICS": json.dumps(EXTRA),
    }


def run(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


@pytest.mark.parametrize("legacy", [False, True], ids=["meters", "usage_records"])
def test_setup_creates_a_price_for_every_catalogue_metric(
    env: dict[str, str], stripe_sandbox: Sandbox, legacy: bool
) -> None:
    flag = ["--legacy"] if legacy else []
    catalogue = MetricCatalogue.from_config(env["COLLECTOR_EXTRA_METRICS"])
    assert {"api_requests", "sms_sent", "gpu_hours"} <= set(catalogue.names)

    code, output = run(env, "stripe", "setup", *flag)

    assert code == 0, output
    client = stripe_sandbox.client
    options = {"stripe_version": LEGACY_VERSION} if legacy else {}
    prices = {p.lookup_key: p for p in client.v1.prices.list({"limit": 100}, options).data}
    products = {p.id: p for p in client.v1.products.list({"limit": 100}).data}
    meters = {m.event_name: m for m in client.v1.billing.meters.list({"limit": 100}).data}
    for name in catalogue.names:
        definition = catalogue[name]
        price = prices[definition.price_lookup_key]
        assert price.recurring.usage_type == "metered", name
        assert products[price.product].name == f"IoT platform usage: {name}", name
        if legacy:
            assert price.recurring.meter is None
        else:
            assert price.recurring.meter == meters[definition.meter_event_name].id, name
    assert prices["api_requests"].unit_amount == 10
    assert prices["api_requests"].transform_quantity.divide_by == 1000
    assert prices["sms_sent"].unit_amount == 0
    assert prices["gpu_hours_peak"].unit_amount == 0
    assert "'sms_sent' has no default price: created at $0 per message" in output
    assert len({p.product for p in prices.values()}) == len(catalogue)
    assert ("meter " in output) != legacy

    code, again = run(env, "stripe", "setup", *flag)
    assert code == 0
    assert "nothing to create" in again
    code, verified = run(env, "stripe", "verify", *flag)
    assert code == 0, verified
    assert "sms_sent: price" in verified
    assert "is $0, so its usage is not charged" in verified


async def test_forwarding_api_requests_in_usage_records_mode_succeeds(
    stripe_sandbox: Sandbox, sandbox_clock: ManualClock, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'legacy.db'}"
    async with harness(stripe_sandbox.url, sandbox_clock, url, "usage_records") as h:
        assert "api_requests" in h.prices
        await h.subscribe("cust_api", extra_prices=(h.prices["api_requests"],))
        start = h.clock.now()
        for hour, requests in ((1, 1200), (2, 34)):
            h.clock.set(start + timedelta(hours=hour, minutes=1))
            await h.ingest(hourly_report("cust_api", start, hour, api_requests=requests, devices=3))
            await h.settle()

        assert await dead_batches(h) == []
        reconciled = await h.services.reconciler.reconcile("cust_api")
    api = next(m for m in reconciled.metrics if m.metric == "api_requests")
    assert (api.collector_billable, api.stripe_value, api.in_sync) == (1234, 1234, True)
