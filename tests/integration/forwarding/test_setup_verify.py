"""`usage-collector stripe setup` and `verify` through the real CLI against the sandbox."""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from collector.adapters.db.migrate import upgrade
from collector.api.app import build_services
from collector.cli import main
from collector.settings import CollectorSettings
from common.schema import UsageReport
from tests.support.collector_process import clean_environment, collector_script
from tests.support.stripe_sandbox import API_KEY, Sandbox


@pytest.fixture
def env(stripe_sandbox: Sandbox, tmp_path: Path) -> dict[str, str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 's.db'}"
    upgrade(url)
    return {
        "COLLECTOR_DATABASE_URL": url,
        "COLLECTOR_STRIPE_API_KEY": API_KEY,
        "COLLECTOR_STRIPE_API_BASE": stripe_sandbox.url,
        "COLLECTOR_LOG_JSON": "false",
    }


def run(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


def ids(output: str) -> dict[str, str]:
    found = {}
    for line in output.splitlines():
        kind, *rest = line.split()
        if kind in {"meter", "price"} and len(rest) == 2:
            found[rest[1]] = rest[0]
    return found


def test_setup_is_idempotent_and_creates_the_right_objects(
    env: dict[str, str], stripe_sandbox: Sandbox
) -> None:
    code, first = run(env, "stripe", "setup")
    assert code == 0, first
    code, second = run(env, "stripe", "setup")
    assert code == 0
    assert "nothing to create" in second
    assert ids(first) == ids(second)
    prices = {p.lookup_key: p for p in stripe_sandbox.client.v1.prices.list({"limit": 100}).data}
    assert prices["device_usage"].unit_amount == 500
    assert prices["storage_gb"].unit_amount == 50
    mqtt = prices["mqtt_messages"]
    assert (mqtt.unit_amount, mqtt.transform_quantity.divide_by, mqtt.transform_quantity.round) == (
        10,
        1000,
        "up",
    )
    meters = {m.event_name: m for m in stripe_sandbox.client.v1.billing.meters.list().data}
    formulas = {name: m.default_aggregation.formula for name, m in meters.items()}
    assert formulas == {
        "device_usage": "last",
        "mqtt_messages": "sum",
        "storage_gb": "last",
        "api_requests": "sum",
    }
    assert mqtt.recurring.meter == meters["mqtt_messages"].id


async def store_report(database_url: str, report: UsageReport) -> None:
    """Store a report through the collector's own ingest service, forwards included."""
    services = build_services(CollectorSettings(database_url=database_url))
    try:
        await services.ingest.store(report)
    finally:
        await services.close()


def subscribe(stripe_sandbox: Sandbox, keys: tuple[str, ...]) -> str:
    client = stripe_sandbox.client
    prices = {p.lookup_key: p.id for p in client.v1.prices.list({"limit": 100}).data}
    customer = client.v1.customers.create({"metadata": {"customer_id": "acme"}})
    client.v1.subscriptions.create(
        {"customer": customer.id, "items": [{"price": prices[k]} for k in keys]}
    )
    return str(customer.id)


def test_verify_is_in_sync_for_a_complete_subscription(
    env: dict[str, str], stripe_sandbox: Sandbox
) -> None:
    run(env, "stripe", "setup")
    customer = subscribe(stripe_sandbox, ("device_usage", "mqtt_messages", "storage_gb"))
    code, linked = run(env, "customers", "link", "acme", customer)
    assert code == 0
    assert "items and billing periods stored" in linked
    assert "sub_" in run(env, "customers", "list")[1]
    code, output = run(env, "stripe", "verify")
    assert code == 0, output
    assert "in_sync: true" in output


def test_verify_reports_a_missing_item_and_a_wrong_formula(
    env: dict[str, str], stripe_sandbox: Sandbox
) -> None:
    stripe_sandbox.client.v1.billing.meters.create(
        {
            "display_name": "storage",
            "event_name": "storage_gb",
            "default_aggregation": {"formula": "sum"},
        }
    )
    run(env, "stripe", "setup")
    customer = subscribe(stripe_sandbox, ("device_usage", "mqtt_messages"))
    run(env, "customers", "link", "acme", customer)
    code, output = run(env, "stripe", "verify")
    assert code == 1
    assert "in_sync: false" in output
    assert "no item for price 'storage_gb'" in output
    assert "aggregates with 'sum', but max needs 'last'" in output
    assert "recommendation:" in output


def test_legacy_setup_creates_prices_with_the_right_aggregation(
    env: dict[str, str], stripe_sandbox: Sandbox
) -> None:
    code, output = run(env, "stripe", "setup", "--legacy")
    assert code == 0, output
    code, output = run(env, "stripe", "verify", "--legacy")
    assert code == 0, output


def test_setup_without_a_key_is_a_clear_error(env: dict[str, str]) -> None:
    env = {**env, "COLLECTOR_STRIPE_API_KEY": ""}
    code, output = run(env, "stripe", "setup")
    assert code != 0
    assert "COLLECTOR_STRIPE_API_KEY" in output


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The installed script as a real process, so stdout and stderr are really apart."""
    return subprocess.run(
        [collector_script(), *args],
        env=clean_environment(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_stripe_calls_log_nothing_between_the_output_lines(env: dict[str, str]) -> None:
    """Issue 12, point 5: each Stripe call used to log three INFO lines (SDK and httpx)."""
    done = cli({**env, "COLLECTOR_LOG_LEVEL": "info"}, "stripe", "setup")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    kinds = {line.split()[0] for line in done.stdout.splitlines()}
    assert kinds <= {"product", "meter", "price", "created", "note"}, done.stdout


def test_setup_and_verify_print_json_for_scripts(
    env: dict[str, str], stripe_sandbox: Sandbox
) -> None:
    done = cli(env, "stripe", "setup", "--output", "json")
    assert done.returncode == 0, done.stderr
    setup = json.loads(done.stdout)
    assert set(setup["meters"]) == {"device_usage", "mqtt_messages", "storage_gb", "api_requests"}
    assert setup["prices"]["device_usage"].startswith("price_")
    customer = subscribe(stripe_sandbox, ("device_usage", "mqtt_messages"))
    code, _ = run(env, "customers", "link", "acme", customer)
    assert code == 0
    done = cli(env, "stripe", "verify", "--output", "json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["in_sync"] is False
    assert any("no item for price 'storage_gb'" in issue for issue in report["issues"])
    assert report["recommendations"]


def test_verify_names_every_customer_whose_usage_cannot_be_billed(
    env: dict[str, str], stripe_sandbox: Sandbox
) -> None:
    run(env, "stripe", "setup")
    customer = subscribe(stripe_sandbox, ("device_usage", "mqtt_messages", "storage_gb"))
    run(env, "customers", "link", "acme", customer)
    token = run(env, "tokens", "create", "--customer", "cust_unlinked", "--output", "json")[1]
    assert token
    report = UsageReport(
        customer_id="cust_unlinked",
        instance_id="edge",
        window_start=datetime.now(UTC) - timedelta(hours=2),
        window_end=datetime.now(UTC) - timedelta(hours=1),
        metrics={"mqtt_messages": 5},
    )
    asyncio.run(store_report(env["COLLECTOR_DATABASE_URL"], report))

    code, output = run(env, "stripe", "verify")

    assert code == 1, output
    assert "in_sync: false" in output
    assert "customer cust_unlinked: usage stored but not billable: not linked" in output
    assert "customer acme: usage stored but not billable" not in output
