"""The seed's bill as an invoice preview, and Stripe webhooks keeping customers linked."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import pytest
import stripe

from collector.adapters.stripe.catalog import StripeCatalog
from collector.services.webhooks import InvalidSignature, WebhookOutcome
from common.clock import ManualClock
from tests.support.forwarding import Harness, harness, hourly_report, new_customer
from tests.support.stripe_sandbox import Sandbox
from tests.support.webhooks import signed as sign_webhook
from tests.support.webhooks import subscription_event

SECRET = "whsec_test_secret"


def starter_plan(client: stripe.StripeClient) -> str:
    """The seed's Starter plan: $29 base, 5 devices included, then $5 per device."""
    product = client.v1.products.create({"name": "Starter Plan"})
    meter = client.v1.billing.meters.create(
        {
            "display_name": "devices",
            "event_name": "device_usage",
            "default_aggregation": {"formula": "last"},
        }
    )
    client.v1.prices.create(
        {
            "currency": "usd",
            "product": product.id,
            "billing_scheme": "tiered",
            "tiers_mode": "graduated",
            "tiers": [{"up_to": 5, "unit_amount": 0}, {"up_to": "inf", "unit_amount": 500}],
            "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id},
            "lookup_key": "device_usage",
        }
    )
    base = client.v1.prices.create(
        {
            "currency": "usd",
            "product": product.id,
            "unit_amount": 2900,
            "recurring": {"interval": "month"},
            "lookup_key": "starter_base",
        }
    )
    return str(base.id)


async def test_eight_devices_on_starter_preview_as_44_dollars(
    stripe_sandbox: Sandbox, sandbox_clock: ManualClock, tmp_path: Path
) -> None:
    base_price = starter_plan(stripe_sandbox.client)
    url = f"sqlite+aiosqlite:///{tmp_path / 'i.db'}"
    async with harness(stripe_sandbox.url, sandbox_clock, url, "meter_events") as h:
        customer = new_customer()
        await h.subscribe(customer, extra_prices=(base_price,))
        start = h.clock.now()
        for hour, devices in enumerate([6, 8, 8], start=1):
            h.clock.set(start + timedelta(hours=hour, minutes=1))
            await h.ingest(hourly_report(customer, start, hour, devices=devices))
            await h.settle()
        invoice = await h.services.reconciler.invoice_preview(customer)
    assert invoice["total"] == 4400
    amounts = sorted(line["amount"] for line in invoice["lines"]["data"])
    assert 2900 in amounts
    assert 1500 in amounts


def signed(payload: dict, secret: str = SECRET, at: int | None = None) -> tuple[bytes, str]:
    return sign_webhook(payload, secret, at)


@pytest.fixture
async def webhook_harness(stripe_sandbox: Sandbox, sandbox_clock: ManualClock, tmp_path: Path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'w.db'}"
    async with harness(
        stripe_sandbox.url, sandbox_clock, url, "meter_events", stripe_webhook_secret=SECRET
    ) as h:
        yield h


async def test_subscription_webhook_links_the_customer_once(webhook_harness) -> None:
    webhooks = webhook_harness.services.webhooks
    body, signature = signed(subscription_event("evt_1", "cust_w", "cus_W"))
    first = await webhooks.handle(body, signature)
    again = await webhooks.handle(body, signature)
    assert (first.duplicate, again.duplicate) == (False, True)
    link = await webhook_harness.services.links.get("cust_w")
    assert link is not None
    assert (link.stripe_customer_id, link.subscription_id) == ("cus_W", "sub_webhook")
    item = await webhook_harness.services.links.item("cust_w", "device_usage")
    assert item is not None
    assert item.subscription_item_id == "si_devices"


@pytest.mark.parametrize(
    ("secret", "age"), [("whsec_wrong", 0), (SECRET, 301)], ids=["bad-signature", "too-old"]
)
async def test_bad_or_old_signatures_are_refused_and_store_nothing(
    webhook_harness,
    secret: str,
    age: int,
) -> None:
    body, signature = signed(
        subscription_event("evt_2", "cust_x", "cus_X"), secret, at=int(time.time()) - age
    )
    with pytest.raises(InvalidSignature):
        await webhook_harness.services.webhooks.handle(body, signature)
    assert await webhook_harness.services.links.get("cust_x") is None
    assert not await webhook_harness.services.links.seen("evt_2")


async def fail_at_stripe(
    h: Harness, sandbox: Sandbox, identifier: str, event_id: str
) -> WebhookOutcome:
    """Stripe fails an event it accepted (it stops counting) and reports it by webhook."""
    assert h.services.stripe is not None
    meters = await StripeCatalog(h.services.stripe.client).meters()
    sandbox.control.error_report(
        meters["mqtt_messages"]["id"],
        [{"identifier": identifier, "code": "meter_event_invalid_value", "message": "invalid"}],
    )
    sample = {"error_message": "invalid", "request": {"identifier": identifier}}
    event = {
        "id": event_id,
        "object": "v2.core.event",
        "type": "v1.billing.meter.error_report_triggered",
        "data": {
            "reason": {
                "error_types": [{"code": "meter_event_invalid_value", "sample_errors": [sample]}]
            }
        },
    }
    body, signature = signed(event)
    return await h.services.webhooks.handle(body, signature)


async def test_meter_error_report_bills_the_named_usage_again_once(
    stripe_sandbox: Sandbox,
    webhook_harness,
) -> None:
    h = webhook_harness
    customer = new_customer()
    await h.subscribe(customer)
    start = h.clock.now()
    h.clock.set(start + timedelta(hours=1, minutes=1))
    await h.ingest(hourly_report(customer, start, 1, mqtt_messages=40))
    await h.settle()
    sent = await h.services.outbox.batches("sent")
    identifier = sent[0].identifier
    outcome = await fail_at_stripe(h, stripe_sandbox, identifier, "evt_meter_err")
    assert "1 requeued" in outcome.action
    await h.settle()
    assert (await h.stripe_totals(customer))["mqtt_messages"] == 40
    rejected = await h.services.outbox.batches("rejected")
    assert [b.identifier for b in rejected] == [identifier]
    resent = await h.services.outbox.batches("sent")
    assert identifier not in {b.identifier for b in resent}
    assert (await h.services.reconciler.reconcile(customer)).in_sync


async def test_concurrent_deliveries_of_one_event_are_processed_once(webhook_harness) -> None:
    """Issue 10, item 9: each delivery checked ``seen`` before either recorded the event id."""
    webhooks = webhook_harness.services.webhooks
    body, signature = signed(subscription_event("evt_twice", "cust_t", "cus_T"))
    outcomes = await asyncio.gather(*(webhooks.handle(body, signature) for _ in range(4)))
    assert sorted(o.duplicate for o in outcomes) == [False, True, True, True]


async def test_usage_stripe_fails_again_and_again_is_parked_after_three_resends(
    stripe_sandbox: Sandbox, webhook_harness
) -> None:
    """A resend carries a new identifier; after three failed resends the batch waits for an
    operator (dead, ``meter_error``) instead of looping, and nothing is counted twice."""
    h = webhook_harness
    customer = new_customer()
    await h.subscribe(customer)
    start = h.clock.now()
    h.clock.set(start + timedelta(hours=1, minutes=1))
    await h.ingest(hourly_report(customer, start, 1, mqtt_messages=40))
    await h.settle()
    identifiers = []
    for attempt in range(4):
        (latest,) = [
            b for b in await h.services.outbox.batches("sent") if b.metric == "mqtt_messages"
        ]
        identifiers.append(latest.identifier)
        await fail_at_stripe(h, stripe_sandbox, latest.identifier, f"evt_fail_{attempt}")
        await h.settle()
        if attempt < 3:
            assert (await h.stripe_totals(customer))["mqtt_messages"] == 40
    assert len(set(identifiers)) == 4
    dead = await h.services.outbox.batches("dead")
    assert [(b.identifier, b.dead_reason) for b in dead] == [(identifiers[-1], "meter_error")]
    assert (await h.stripe_totals(customer))["mqtt_messages"] == 0
    state = await h.services.outbox.state(dead[0].period_id, "mqtt_messages")
    assert state is not None
    assert state.billed_total == 0
