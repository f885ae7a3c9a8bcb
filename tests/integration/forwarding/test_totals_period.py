"""`/totals` defaults to the billing period `/reconcile` uses, and says where it came from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from common.clock import ManualClock
from tests.support.forwarding import api_client, harness, hourly_report
from tests.support.stripe_sandbox import Sandbox


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def test_totals_use_the_billing_period_reconcile_uses_not_the_calendar_month(
    stripe_sandbox: Sandbox, sandbox_clock: ManualClock, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 't.db'}"
    async with harness(stripe_sandbox.url, sandbox_clock, url, "meter_events") as h:
        subscription = await h.create_subscription("cust_sub")
        start, end = subscription.period
        assert (start.day, start.hour, end.month, end.day) == (1, 12, 4, 1)
        # a window of April 1st, 05:00-06:00: the subscription's March period, April's calendar
        late = end - timedelta(hours=6)
        for customer in ("cust_sub", "cust_free"):
            await h.ingest(hourly_report(customer, late - timedelta(hours=1), 1, mqtt_messages=7))
        h.clock.set(late + timedelta(hours=1))
        async with api_client(h, "viewer") as api:
            linked = (await api.get("/api/usage/cust_sub/totals")).json()
            reconciled = (await api.get("/api/usage/cust_sub/reconcile")).json()
            unlinked = (await api.get("/api/usage/cust_free/totals")).json()

    assert linked["period_source"] == "subscription"
    assert (linked["since"], linked["until"]) == (iso(start), iso(end))
    assert (linked["since"], linked["until"]) == (
        reconciled["period_start"].replace("+00:00", "Z"),
        reconciled["period_end"].replace("+00:00", "Z"),
    )
    assert {t["name"]: t["value"] for t in linked["totals"]} == {"mqtt_messages": "7"}

    april = datetime(2026, 4, 1, tzinfo=UTC)
    assert unlinked["period_source"] == "calendar"
    assert (unlinked["since"], unlinked["until"]) == (
        iso(april),
        iso(datetime(2026, 5, 1, tzinfo=UTC)),
    )
    assert {t["name"]: t["value"] for t in unlinked["totals"]} == {"mqtt_messages": "7"}


async def test_totals_with_both_bounds_say_the_request_chose_the_period(
    stripe_sandbox: Sandbox, sandbox_clock: ManualClock, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    async with harness(stripe_sandbox.url, sandbox_clock, url, "meter_events") as h:
        await h.create_subscription("cust_sub")
        async with api_client(h, "viewer") as api:
            given = await api.get(
                "/api/usage/cust_sub/totals",
                params={"since": "2026-02-01T00:00:00Z", "until": "2026-02-02T00:00:00Z"},
            )
            half = await api.get(
                "/api/usage/cust_sub/totals", params={"since": "2026-03-02T00:00:00Z"}
            )

    assert given.status_code == 200, given.text
    assert given.json()["period_source"] == "request"
    assert half.json()["period_source"] == "subscription"
    assert half.json()["since"] == "2026-03-02T00:00:00Z"
    assert half.json()["until"] == "2026-04-01T12:00:00Z"


async def test_windows_before_the_first_period_count_in_it_as_stripe_bills_them(
    stripe_sandbox: Sandbox, sandbox_clock: ManualClock, tmp_path: Path
) -> None:
    """The agent may report before the subscription starts; those windows bill in its first
    period, so the totals of that period include them and agree with Stripe."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'f.db'}"
    async with harness(stripe_sandbox.url, sandbox_clock, url, "meter_events") as h:
        subscription = await h.create_subscription("cust_early")
        start, _ = subscription.period
        await h.ingest(hourly_report("cust_early", start - timedelta(hours=2), 1, mqtt_messages=5))
        await h.report(hourly_report("cust_early", start, 1, mqtt_messages=7))
        await h.settle()
        async with api_client(h, "viewer") as api:
            totals = (await api.get("/api/usage/cust_early/totals")).json()
            reconciled = (await api.get("/api/usage/cust_early/reconcile")).json()

    assert totals["since"] == iso(start)
    assert {t["name"]: t["value"] for t in totals["totals"]} == {"mqtt_messages": "12"}
    (mqtt,) = [m for m in reconciled["metrics"] if m["metric"] == "mqtt_messages"]
    assert mqtt["in_sync"] is True
