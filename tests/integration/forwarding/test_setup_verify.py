"""`usage-collector stripe setup` and `verify` through the real CLI against the sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from collector.adapters.db.migrate import upgrade
from collector.cli import main
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
