"""The reconciler's Stripe read budget with many customers, counted where Stripe would count it.

The sandbox stamps each request's arrival with the harness's manual clock (its ``ticker``), so
the budget is checked over every sliding one-second window of arrivals, not per calendar
second, and across the boundary between two rounds, where a stretched round hands over to the
next one at once. Not timed: the clock only moves when the reconciler sleeps.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.services.reconciler import Check, Reconciler
from common.clock import ManualClock
from tests.support.forwarding import Harness, harness, hourly_report, new_customer
from tests.support.stripe_sandbox import Sandbox, running_sandbox

CUSTOMERS = 60
RATE = 5
INTERVAL = 10
RESOLUTION = 1e-6
"""Seconds: the precision to which the budget is checked."""
SUMMARIES = "/event_summaries"
METERS = "/v1/billing/meters"


@pytest.fixture
def counting_sandbox(sandbox_clock: ManualClock) -> Iterator[Sandbox]:
    """A sandbox whose call log is stamped with the manual clock's time, as the limiter sees it."""

    def ticker() -> float:
        return sandbox_clock.now().timestamp()

    with running_sandbox(sandbox_clock, ticker=ticker) as sandbox:
        yield sandbox


async def linked_customers_with_usage(h: Harness, count: int) -> list[str]:
    start = h.clock.now()
    customers = [new_customer() for _ in range(count)]
    for customer in customers:
        await h.subscribe(customer)
    for customer in customers:
        await h.report(hourly_report(customer, start, 1, devices=2, mqtt_messages=10))
    await h.settle()
    return customers


def reads_since(sandbox: Sandbox, before: int) -> list[dict[str, Any]]:
    calls = sandbox.control.calls()[before:]
    return [c for c in calls if c["method"] == "GET" and c["path"].startswith(METERS)]


def busiest_second(stamps: list[float]) -> int:
    """Most arrivals in any window [t, t + 1 s) of the sandbox's clock, to the microsecond.

    Shared slots are stamped in epoch seconds as float8, which near today's epoch resolves
    about 0.2 µs: a slot can free a fraction of a microsecond early on the sandbox's clock.
    """
    stamps = sorted(stamps)
    return max(bisect.bisect_left(stamps, t + 1.0 - RESOLUTION) - i for i, t in enumerate(stamps))


async def two_rounds(loop: Reconciler) -> list[Check]:
    """Two rounds back to back: ``serve`` starts the next at once when a round outlasts the
    interval, as every round here does."""
    return [*await loop.round(), *await loop.round()]


async def test_many_customers_never_get_more_reads_than_the_budget_in_any_second(
    counting_sandbox: Sandbox, sandbox_clock: ManualClock, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'c.db'}"
    async with harness(
        counting_sandbox.url,
        sandbox_clock,
        url,
        "meter_events",
        reconcile_interval=INTERVAL,
        reconcile_max_rps=RATE,
    ) as h:
        customers = await linked_customers_with_usage(h, CUSTOMERS)
        before = len(counting_sandbox.control.calls())
        assert h.services.reconcile_loop is not None
        checks = await two_rounds(h.services.reconcile_loop)
        reads = reads_since(counting_sandbox, before)

    assert sorted(c.customer_id for c in checks) == sorted(customers * 2)
    assert {c.state for c in checks} == {"in_sync"}
    summaries = [r for r in reads if r["path"].endswith(SUMMARIES)]
    assert len(summaries) == 2 * 4 * CUSTOMERS  # one per metric, customer and round
    stamps = [r["monotonic"] for r in reads]
    assert busiest_second(stamps) == RATE  # the budget is used, and never exceeded
    # Two 10 s intervals cannot hold 4 reads for each of 60 customers twice at 5/s: the limiter
    # stretched the rounds instead of exceeding the budget.
    assert max(stamps) - min(stamps) > 2 * INTERVAL


@pytest.mark.postgres
async def test_two_replicas_with_many_customers_share_one_budget_in_every_second(
    counting_sandbox: Sandbox, sandbox_clock: ManualClock, postgres_url: str
) -> None:
    """Only the leader reconciles, but a handover can overlap two (``collector.services.leader``):
    the budget is shared through the database, so both together keep to it."""
    settings: dict[str, Any] = {"reconcile_interval": INTERVAL, "reconcile_max_rps": RATE}
    url = counting_sandbox.url
    async with (
        harness(url, sandbox_clock, postgres_url, "meter_events", **settings) as h,
        harness(url, sandbox_clock, postgres_url, "meter_events", **settings) as other,
    ):
        customers = await linked_customers_with_usage(h, CUSTOMERS // 2)
        before = len(counting_sandbox.control.calls())
        assert h.services.reconcile_loop is not None
        assert other.services.reconcile_loop is not None
        mine, theirs = await asyncio.gather(
            two_rounds(h.services.reconcile_loop), two_rounds(other.services.reconcile_loop)
        )
        reads = reads_since(counting_sandbox, before)

    for checks in (mine, theirs):
        assert sorted(c.customer_id for c in checks) == sorted(customers * 2)
        assert {c.state for c in checks} == {"in_sync"}
    summaries = [r for r in reads if r["path"].endswith(SUMMARIES)]
    assert len(summaries) == 2 * 2 * 4 * len(customers)
    assert busiest_second([r["monotonic"] for r in reads]) <= RATE
