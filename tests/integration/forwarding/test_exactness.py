"""What the Stripe sandbox bills equals the ground truth, in every forwarding mode."""

from __future__ import annotations

import asyncio
import math
import random
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.clock import ManualClock
from tests.support.forwarding import Harness, harness, hourly_report, new_customer
from tests.support.stripe_sandbox import START, Sandbox, running_sandbox

MODES = ["meter_events", "meter_event_stream", "usage_records"]


def truth(windows: list[dict[str, float]]) -> dict[str, int]:
    """Independent ground truth: sum of deltas, newest device count, peak storage rounded up."""
    return {
        "mqtt_messages": int(sum(w["mqtt_messages"] for w in windows)),
        "device_usage": int(windows[-1]["devices"]),
        "storage_gb": math.ceil(max(w["storage_gb"] for w in windows)),
    }


async def billed(h: Harness, customer_id: str) -> dict[str, int]:
    totals = await h.stripe_totals(customer_id)
    names = {
        "mqtt_messages": "mqtt_messages",
        "devices": "device_usage",
        "storage_gb": "storage_gb",
    }
    return {names[k]: int(v or 0) for k, v in totals.items() if k in names}


@pytest.mark.parametrize("mode", MODES)
async def test_a_day_of_windows_is_billed_exactly(
    mode: str, stripe_sandbox: Sandbox, sandbox_clock: ManualClock, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'c.db'}"
    async with harness(stripe_sandbox.url, sandbox_clock, url, mode) as h:
        customer = new_customer()
        await h.subscribe(customer)
        rng = random.Random(mode)
        windows = [
            {
                "mqtt_messages": rng.randint(0, 50_000),
                "devices": rng.choice([7, 8, 8, 9]),
                "storage_gb": round(rng.uniform(1, 20), 2),
            }
            for _ in range(24)
        ]
        start = h.clock.now()
        for hour, metrics in enumerate(windows, start=1):
            h.clock.set(start + timedelta(hours=hour, minutes=1))
            await h.ingest(hourly_report(customer, start, hour, **metrics))
            await h.settle()
        assert await billed(h, customer) == truth(windows)
        reconciliation = await h.services.reconciler.reconcile(customer)
        assert reconciliation.in_sync
        status = await h.services.forwarding.status()
        assert "dead" not in status.batches


@st.composite
def scenarios(draw: st.DrawFn) -> dict:
    count = draw(st.integers(1, 10))
    windows = [
        {
            "mqtt_messages": draw(st.integers(0, 10**7)),
            "devices": draw(st.integers(0, 500)),
            "storage_gb": float(draw(st.decimals(0, 5000, places=2))),
        }
        for _ in range(count)
    ]
    deliveries = draw(st.lists(st.integers(0, count - 1), min_size=count, max_size=3 * count))
    deliveries = draw(st.permutations(sorted(set(range(count)) | set(deliveries))))
    duplicates = draw(st.lists(st.sampled_from(range(count)), max_size=count))
    steps_after = draw(st.sets(st.integers(0, len(deliveries) + len(duplicates))))
    return {"windows": windows, "order": list(deliveries) + duplicates, "steps": steps_after}


@pytest.mark.parametrize("mode", MODES)
def test_random_report_sequences_bill_the_truth(mode: str, tmp_path: Path) -> None:
    clock = ManualClock(START)
    url = f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"
    with running_sandbox(clock) as sandbox:

        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
        @given(scenarios())
        def check(scenario: dict) -> None:
            asyncio.run(run_scenario(sandbox, clock, url, mode, scenario))

        check()


async def run_scenario(
    sandbox: Sandbox, clock: ManualClock, url: str, mode: str, scenario: dict
) -> None:
    async with harness(sandbox.url, clock, url, mode) as h:
        customer = new_customer()
        await h.subscribe(customer)
        start = clock.now()
        windows = scenario["windows"]
        clock.set(start + timedelta(hours=len(windows), minutes=1))
        for position, index in enumerate(scenario["order"]):
            await h.ingest(hourly_report(customer, start, index + 1, **windows[index]))
            if position in scenario["steps"]:
                await h.forwarder.step()
        await h.settle()
        assert await billed(h, customer) == truth(windows)
        clock.advance(timedelta(hours=1))


async def test_reconcile_counts_only_the_customers_own_waiting_forwards(
    stripe_sandbox: Sandbox, sandbox_clock: ManualClock, tmp_path: Path
) -> None:
    """Issue 10, item 9: a customer-scoped caller saw every customer's waiting forwards."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    async with harness(stripe_sandbox.url, sandbox_clock, url, "meter_events") as h:
        linked, unlinked = new_customer(), new_customer()
        await h.subscribe(linked)
        start = h.clock.now()
        h.clock.set(start + timedelta(hours=1, minutes=1))
        await h.ingest(hourly_report(linked, start, 1, mqtt_messages=5))
        await h.ingest(hourly_report(unlinked, start, 1, mqtt_messages=7))
        await h.forwarder.drain()
        reconciliation = await h.services.reconciler.reconcile(linked)
        assert reconciliation.pending_forwards == 0
        assert reconciliation.in_sync
