"""The period hints in the answer to a report: cached briefly, read once per customer at a time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from collector.adapters.db.outbox_records import PeriodRef
from collector.services.period_hints import PeriodHints
from common.clock import ManualClock

NOW = datetime(2026, 3, 10, tzinfo=UTC)


def period(start: datetime, end: datetime) -> PeriodRef:
    return PeriodRef(
        id=1,
        customer_id="cust_1",
        stripe_customer_id="cus_1",
        subscription_id="sub_1",
        start=start,
        end=end,
    )


class SlowLinks:
    """Periods read from a store that answers only when ``release`` is set."""

    def __init__(self, periods: list[PeriodRef]) -> None:
        self.periods_of = periods
        self.reads = 0
        self.release = asyncio.Event()
        self.fail: Exception | None = None

    async def periods(self, customer_id: str) -> list[PeriodRef]:
        self.reads += 1
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return list(self.periods_of)


def current() -> list[PeriodRef]:
    return [
        period(NOW - timedelta(days=100), NOW - timedelta(days=70)),
        period(NOW - timedelta(days=9), NOW + timedelta(days=21)),
    ]


async def started() -> None:
    """Let every task started so far run up to the read it waits on."""
    for _ in range(5):
        await asyncio.sleep(0)


async def many(hints: PeriodHints, count: int) -> list[list[object]]:
    return await asyncio.gather(*(hints.for_customer("cust_1") for _ in range(count)))


def test_requests_that_miss_together_share_one_read_and_see_recent_periods_only() -> None:
    async def scenario() -> None:
        links = SlowLinks(current())
        hints = PeriodHints(links, ManualClock(NOW), ttl=30.0)
        waiting = asyncio.ensure_future(many(hints, 50))
        await started()
        links.release.set()
        answers = await waiting
        assert links.reads == 1
        assert all(a == answers[0] for a in answers)
        assert [(p.start, p.end) for p in answers[0]] == [
            (NOW - timedelta(days=9), NOW + timedelta(days=21))
        ]

    asyncio.run(scenario())


def test_the_answer_is_kept_for_the_ttl_then_read_again() -> None:
    async def scenario() -> None:
        links = SlowLinks(current())
        links.release.set()
        clock = ManualClock(NOW)
        hints = PeriodHints(links, clock, ttl=30.0)
        await hints.for_customer("cust_1")
        clock.advance(29)
        await hints.for_customer("cust_1")
        assert links.reads == 1
        clock.advance(2)
        await hints.for_customer("cust_1")
        assert links.reads == 2

    asyncio.run(scenario())


def test_a_failed_read_reaches_every_waiter_and_is_not_remembered() -> None:
    async def scenario() -> None:
        links = SlowLinks(current())
        links.fail = RuntimeError("database down")
        hints = PeriodHints(links, ManualClock(NOW))
        waiting = asyncio.ensure_future(many(hints, 5))
        await started()
        links.release.set()
        with pytest.raises(RuntimeError, match="database down"):
            await waiting
        links.fail = None
        assert len(await hints.for_customer("cust_1")) == 1
        assert links.reads == 2

    asyncio.run(scenario())


def test_a_read_under_way_when_the_customer_is_forgotten_is_not_remembered() -> None:
    async def scenario() -> None:
        links = SlowLinks(current())
        hints = PeriodHints(links, ManualClock(NOW))
        waiting = asyncio.ensure_future(hints.for_customer("cust_1"))
        await started()
        hints.forget("cust_1")
        links.release.set()
        await waiting
        await hints.for_customer("cust_1")
        assert links.reads == 2

    asyncio.run(scenario())
