"""Every sandbox object has exactly the top-level fields of Stripe's own example object."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.stripe_sandbox.catalog import setup_starter, subscribe
from tests.support.stripe_sandbox import Sandbox

FIXTURES = Path(__file__).resolve().parents[3].parent / "shared" / "stripe" / "fixtures3.json"


@pytest.fixture(scope="module")
def stripe_fixtures() -> dict[str, Any]:
    if not FIXTURES.exists():
        pytest.skip(f"{FIXTURES} is not present")
    resources: dict[str, Any] = json.loads(FIXTURES.read_text())["resources"]
    return resources


def test_objects_have_the_fixture_fields(
    stripe_sandbox: Sandbox, stripe_fixtures: dict[str, Any]
) -> None:
    client = stripe_sandbox.client
    starter = setup_starter(client)
    subscription = subscribe(client, starter)
    meter = starter.meters["device_usage"]
    event = client.v1.billing.meter_events.create(
        {
            "event_name": "device_usage",
            "payload": {"stripe_customer_id": starter.customer.id, "value": "8"},
        }
    )
    now = int(stripe_sandbox.clock.now().timestamp())
    summary = client.v1.billing.meters.event_summaries.list(
        meter.id,
        {"customer": starter.customer.id, "start_time": now - 3600, "end_time": now + 3600},
    ).data[0]
    preview = client.v1.invoices.create_preview({"subscription": subscription.id})
    item = client.v1.subscription_items.list({"subscription": subscription.id}).data[0]
    webhook_event = client.v1.events.list({"type": "customer.subscription.created"}).data[0]
    objects = {
        "billing.meter": meter,
        "billing.meter_event": event,
        "billing.meter_event_summary": summary,
        "price": client.v1.prices.retrieve(starter.prices["starter_base"].id),
        "product": starter.product,
        "customer": starter.customer,
        "subscription": subscription,
        "subscription_item": item,
        "invoice": preview,
        "line_item": preview.lines.data[0],
        "event": webhook_event,
    }

    for name, obj in objects.items():
        assert set(obj.to_dict()) == set(stripe_fixtures[name]), name
