"""The customers view and checked linking, over the API and the CLI, against the Stripe sandbox.

Usage stored for a customer nobody linked used to wait forever with nothing to show for it, and
linking accepted a Stripe customer that does not exist, silently replaced a link, and let two
customers share one Stripe customer.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from collector.cli import main
from common.clock import ManualClock
from tests.support.forwarding import Harness, api_client, harness, hourly_report, new_customer
from tests.support.stripe_sandbox import API_KEY, Sandbox

HOUR = timedelta(hours=1)


@pytest.fixture
async def h(stripe_sandbox: Sandbox, sandbox_clock: ManualClock, tmp_path: Path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'c.db'}"
    async with harness(stripe_sandbox.url, sandbox_clock, url, "meter_events") as running:
        yield running


async def stripe_customer(h: Harness) -> str:
    created = await h.client.v1.customers.create_async({"name": "Initech"})
    return str(created.id)


async def test_linking_a_stripe_customer_that_does_not_exist_is_refused(h: Harness) -> None:
    async with api_client(h) as api:
        answer = await api.post(
            "/api/customers/acme/link", json={"stripe_customer_id": "cus_doesnotexist"}
        )
        listed = (await api.get("/api/customers")).json()

    assert answer.status_code == 422
    assert answer.json()["error"] == "stripe_customer_not_found"
    assert "cus_doesnotexist" in answer.json()["detail"]
    assert listed == []


async def test_a_stripe_outage_while_checking_links_nothing(
    h: Harness, stripe_sandbox: Sandbox
) -> None:
    customer = await stripe_customer(h)
    stripe_sandbox.control.faults(error_500_rate=1.0, path_prefixes=["/v1/customers/"])
    try:
        async with api_client(h) as api:
            answer = await api.post(
                "/api/customers/acme/link", json={"stripe_customer_id": customer}
            )
    finally:
        stripe_sandbox.control.clear_faults()

    assert answer.status_code == 502
    assert "nothing was linked" in answer.json()["detail"]
    assert await h.services.links.get("acme") is None


async def test_the_answer_says_when_the_subscription_could_not_be_read(
    h: Harness, stripe_sandbox: Sandbox
) -> None:
    customer = await stripe_customer(h)
    stripe_sandbox.control.faults(error_500_rate=1.0, path_prefixes=["/v1/subscriptions"])
    try:
        async with api_client(h) as api:
            answer = await api.post(
                "/api/customers/acme/link", json={"stripe_customer_id": customer}
            )
    finally:
        stripe_sandbox.control.clear_faults()

    assert answer.status_code == 200
    body = answer.json()
    assert (body["stripe_checked"], body["subscription"]) == (True, "unreadable")
    assert "500" in body["detail"]
    assert body["period"] is None


async def test_a_subscribed_customer_links_with_its_period(h: Harness) -> None:
    stripe_customer_id = await h.subscribe("other")  # a Stripe customer with a subscription
    async with api_client(h) as api:
        answer = await api.post(
            "/api/customers/acme/link",
            json={"stripe_customer_id": stripe_customer_id, "share": True},
        )

    body = answer.json()
    assert answer.status_code == 200, body
    assert body["subscription"] == "read"
    assert body["subscription_id"].startswith("sub_")
    start, end = (datetime.fromisoformat(body["period"][k]) for k in ("start", "end"))
    assert start <= h.clock.now() < end


async def test_relinking_needs_replace_and_says_what_it_replaced(h: Harness) -> None:
    first, second = await stripe_customer(h), await stripe_customer(h)
    async with api_client(h) as api:
        assert (
            await api.post("/api/customers/acme/link", json={"stripe_customer_id": first})
        ).status_code == 200
        refused = await api.post("/api/customers/acme/link", json={"stripe_customer_id": second})
        again = await api.post("/api/customers/acme/link", json={"stripe_customer_id": first})
        replaced = await api.post(
            "/api/customers/acme/link", json={"stripe_customer_id": second, "replace": True}
        )

    assert refused.status_code == 409
    assert refused.json()["error"] == "already_linked"
    assert again.status_code == 200  # the same link again changes nothing
    assert again.json()["replaced"] is None
    assert replaced.status_code == 200
    assert replaced.json()["replaced"] == first
    link = await h.services.links.get("acme")
    assert link is not None
    assert link.stripe_customer_id == second


async def test_one_stripe_customer_backs_two_customers_only_when_shared(h: Harness) -> None:
    shared = await stripe_customer(h)
    async with api_client(h) as api:
        await api.post("/api/customers/acme/link", json={"stripe_customer_id": shared})
        refused = await api.post("/api/customers/globex/link", json={"stripe_customer_id": shared})
        allowed = await api.post(
            "/api/customers/globex/link", json={"stripe_customer_id": shared, "share": True}
        )

    assert refused.status_code == 409
    assert refused.json()["error"] == "stripe_customer_in_use"
    assert "acme" in refused.json()["detail"]
    assert allowed.status_code == 200


async def test_the_customers_view_shows_unlinked_usage_silence_and_reconcile_state(
    h: Harness,
) -> None:
    start = h.clock.now() - 6 * HOUR
    linked = new_customer()
    await h.subscribe(linked)
    await h.report(hourly_report(linked, start, 6, devices=3))
    await h.settle()
    await h.ingest(hourly_report("cust_unlinked", start, 1, mqtt_messages=5))
    waited = (h.clock.now() - (start + HOUR)).total_seconds()

    async with api_client(h, "viewer") as api:
        everyone = {c["customer_id"]: c for c in (await api.get("/api/customers")).json()}
        unlinked = (await api.get("/api/customers", params={"unlinked": "true"})).json()
        silent = (await api.get("/api/customers", params={"silent": "true"})).json()
        assert (await api.get(f"/api/usage/{linked}/reconcile")).json()["in_sync"] is True
        after = (await api.get(f"/api/customers/{linked}")).json()
        drifting = (await api.get("/api/customers", params={"out_of_sync": "true"})).json()
        missing = await api.get("/api/customers/nobody")

    waiting = everyone["cust_unlinked"]
    assert (waiting["linked"], waiting["pending"], waiting["sent"]) == (False, 1, 0)
    assert "not linked" in waiting["unbillable"]
    assert waiting["oldest_unbilled_seconds"] == waited
    assert waiting["instances"][0]["silent"] is True  # last window ended 5 intervals ago
    billed = everyone[linked]
    assert billed["linked"] is True
    assert (billed["pending"], billed["dead"], billed["unbillable"]) == (0, 0, None)
    assert billed["sent"] >= 1
    assert billed["period"] is not None
    assert billed["instances"][0]["silent"] is False
    assert billed["reconcile"] == "unknown"
    assert [c["customer_id"] for c in unlinked] == ["cust_unlinked"]
    assert [c["customer_id"] for c in silent] == ["cust_unlinked"]
    assert after["reconcile"] == "in_sync"
    assert after["reconciled_at"] is not None
    assert drifting == []
    assert missing.status_code == 404


async def test_the_cli_links_checked_and_lists_customers(h: Harness) -> None:
    first, second = await stripe_customer(h), await stripe_customer(h)
    await h.report(hourly_report("cust_unlinked", h.clock.now() - 2 * HOUR, 1, mqtt_messages=5))
    env = {
        "COLLECTOR_DATABASE_URL": h.settings.database_url.get_secret_value(),
        "COLLECTOR_STRIPE_API_KEY": API_KEY,
        "COLLECTOR_STRIPE_API_BASE": str(h.settings.stripe_api_base),
        "COLLECTOR_LOG_JSON": "false",
    }
    runner = CliRunner()

    async def run(*args: str) -> Result:
        # The CLI runs its own event loop, so it runs beside the test's, as it would in a shell.
        return await asyncio.to_thread(runner.invoke, main, list(args), env=env)

    missing = await run("customers", "link", "acme", "cus_doesnotexist")
    linked = await run("customers", "link", "acme", first)
    refused = await run("customers", "link", "acme", second)
    forced = await run("customers", "link", "acme", second, "--force")
    listed = await run("customers", "list", "--unlinked")

    assert missing.exit_code == 1
    assert "Stripe has no customer cus_doesnotexist" in missing.output
    assert linked.exit_code == 0, linked.output
    assert refused.exit_code == 1
    assert "--force" in refused.output
    assert forced.exit_code == 0, forced.output
    assert f"relinked acme: {first} -> {second}" in forced.output
    assert listed.exit_code == 0
    assert "cust_unlinked" in listed.output
    assert "not billable: not linked" in listed.output
