"""Legacy usage records: only with a pinned pre-basil version, via ``raw_request``."""

from __future__ import annotations

import json
from typing import Any

import pytest
import stripe

from tests.support.stripe_sandbox import LEGACY_VERSION, Sandbox


def _legacy_item(sandbox: Sandbox, aggregate_usage: str) -> str:
    client = sandbox.client
    legacy = {"stripe_version": LEGACY_VERSION}
    customer = client.v1.customers.create({"name": "acme"})
    product = client.v1.products.create({"name": "Legacy"})
    price = client.v1.prices.create(
        {
            "currency": "usd",
            "product": product.id,
            "unit_amount": 500,
            "recurring": {
                "interval": "month",
                "usage_type": "metered",
                "aggregate_usage": aggregate_usage,
            },
        },
        legacy,
    )
    subscription = client.v1.subscriptions.create(
        {"customer": customer.id, "items": [{"price": price.id}]}, legacy
    )
    return str(subscription["items"].data[0].id)


def _record(sandbox: Sandbox, item: str, quantity: int, ts: int, action: str) -> dict[str, Any]:
    response = sandbox.client.raw_request(
        "post",
        f"/v1/subscription_items/{item}/usage_records",
        quantity=quantity,
        timestamp=ts,
        action=action,
        stripe_version=LEGACY_VERSION,
    )
    return dict(json.loads(response.body))


def _current_total(sandbox: Sandbox, item: str) -> int:
    response = sandbox.client.raw_request(
        "get",
        f"/v1/subscription_items/{item}/usage_record_summaries",
        stripe_version=LEGACY_VERSION,
    )
    return int(json.loads(response.body)["data"][0]["total_usage"])


@pytest.mark.parametrize(
    ("aggregate_usage", "expected"),
    [("sum", 8 + 9 + 3), ("last_during_period", 3), ("max", 9), ("last_ever", 3)],
)
def test_set_overwrites_only_its_own_timestamp(
    stripe_sandbox: Sandbox, aggregate_usage: str, expected: int
) -> None:
    item = _legacy_item(stripe_sandbox, aggregate_usage)
    now = int(stripe_sandbox.clock.now().timestamp())
    stripe_sandbox.control.advance_clock(7200)

    _record(stripe_sandbox, item, 5, now + 10, "set")
    _record(stripe_sandbox, item, 8, now + 10, "set")  # replaces 5 at the same timestamp
    _record(stripe_sandbox, item, 9, now + 3600, "set")
    _record(stripe_sandbox, item, 3, now + 7200, "set")

    assert _current_total(stripe_sandbox, item) == expected


def test_increment_adds_at_a_timestamp(stripe_sandbox: Sandbox) -> None:
    item = _legacy_item(stripe_sandbox, "sum")
    now = int(stripe_sandbox.clock.now().timestamp())

    record = _record(stripe_sandbox, item, 4, now, "increment")
    _record(stripe_sandbox, item, 6, now, "increment")

    assert record["object"] == "usage_record"
    assert record["id"].startswith("mbur_")
    assert _current_total(stripe_sandbox, item) == 10
    assert [r["action"] for r in stripe_sandbox.control.usage_records()] == ["increment"] * 2


def test_usage_records_are_unknown_to_current_versions(stripe_sandbox: Sandbox) -> None:
    item = _legacy_item(stripe_sandbox, "sum")

    with pytest.raises(stripe.InvalidRequestError) as unknown:
        stripe_sandbox.client.raw_request(
            "post", f"/v1/subscription_items/{item}/usage_records", quantity=1
        )

    assert unknown.value.http_status == 404
    assert "Unrecognized request URL" in str(unknown.value.user_message)
