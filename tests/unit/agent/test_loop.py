"""The schedule on a manual clock: aligned windows, backoff, stop on permanent errors."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest

from agent.adapters.collector_client import Delivery
from agent.errors import CollectorRejected, CollectorUnavailable
from agent.loop import AgentLoop, RetryPolicy
from agent.services.collect import CollectedReport
from common.clock import ManualClock
from common.schema import UsageReport
from common.windows import Window

START = datetime(2024, 3, 1, 10, 17, 3, tzinfo=UTC)
INTERVAL = timedelta(minutes=15)
OFFSET = timedelta(seconds=30)


class FakeSource:
    def __init__(self, clock: ManualClock, *, fail_first: int = 0) -> None:
        self.clock = clock
        self.collected: list[tuple[Window, datetime]] = []
        self.commits: list[Window] = []
        self.fail_first = fail_first

    async def collect(self, window: Window) -> CollectedReport:
        self.collected.append((window, self.clock.now()))
        if self.fail_first:
            self.fail_first -= 1
            raise RuntimeError("bug in a cycle")
        report = UsageReport(
            customer_id="c",
            instance_id="i",
            window_start=window.start,
            window_end=window.end,
            metrics={"devices": 1},
        )
        return CollectedReport(report, (lambda: self.commits.append(window),))


class FakeSender:
    """Answers from a script (a Delivery or an exception per call), then CREATED."""

    def __init__(self, script=(), *, on_send=None) -> None:
        self.script = list(script)
        self.sent: list[UsageReport] = []
        self.on_send = on_send

    async def send(self, report: UsageReport) -> Delivery:
        self.sent.append(report)
        if self.on_send:
            self.on_send(self)
        outcome = self.script.pop(0) if self.script else Delivery.CREATED
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def make_loop(clock, source, sender, *, maximum: float = 60.0) -> AgentLoop:
    return AgentLoop(
        source=source,
        sender=sender,
        clock=clock,
        interval=INTERVAL,
        query_offset=OFFSET,
        retry=RetryPolicy(initial=1.0, maximum=maximum),
        rng=random.Random(7),
    )


async def test_windows_are_aligned_and_collected_after_the_query_offset():
    clock = ManualClock(START)
    source = FakeSource(clock)
    loop: AgentLoop
    sender = FakeSender(on_send=lambda s: len(s.sent) == 3 and loop.stop())
    loop = make_loop(clock, source, sender)

    await loop.run()

    first = datetime(2024, 3, 1, 10, 15, tzinfo=UTC)
    assert [w for w, _ in source.collected] == [
        Window(first + i * INTERVAL, first + (i + 1) * INTERVAL) for i in range(3)
    ]
    assert [at for _, at in source.collected] == [w.end + OFFSET for w, _ in source.collected]
    assert len(source.commits) == 3


async def test_run_once_sends_the_last_complete_window():
    clock = ManualClock(datetime(2024, 3, 1, 11, 0, 10, tzinfo=UTC))
    source = FakeSource(clock)
    sender = FakeSender()

    assert await make_loop(clock, source, sender).run_once(attempts=3) is True

    # 11:00:10 is within the offset of 11:00, so 10:45-11:00 is not complete yet.
    assert source.collected[0][0] == Window(
        datetime(2024, 3, 1, 10, 30, tzinfo=UTC), datetime(2024, 3, 1, 10, 45, tzinfo=UTC)
    )


async def test_transient_errors_are_retried_with_capped_backoff_and_retry_after():
    clock = ManualClock(START)
    source = FakeSource(clock)
    sender = FakeSender(
        [
            CollectorUnavailable("down", status=503),
            CollectorUnavailable("down", status=503),
            CollectorUnavailable("throttled", status=429, retry_after=42.0),
            CollectorUnavailable("down", status=503),
            CollectorUnavailable("down", status=503),
            CollectorUnavailable("down", status=503),
            Delivery.DUPLICATE,
        ]
    )

    accepted = await make_loop(clock, source, sender, maximum=8.0).run_once(attempts=10)

    assert accepted is True
    assert len(sender.sent) == 7
    assert len({r.report_id for r in sender.sent}) == 1
    delays = clock.slept
    caps = [1, 2, 4, 8, 8, 8]
    assert all(cap / 2 <= d <= cap for d, cap in zip(delays, caps, strict=True) if d != delays[2])
    assert delays[2] >= 42.0
    assert len(source.commits) == 1


async def test_permanent_rejection_is_not_retried_or_committed():
    clock = ManualClock(START)
    source = FakeSource(clock)
    sender = FakeSender([CollectorRejected("bad", status=422)])

    assert await make_loop(clock, source, sender).run_once(attempts=5) is False
    assert len(sender.sent) == 1
    assert clock.slept == []
    assert source.commits == []


async def test_run_once_gives_up_after_its_attempts():
    clock = ManualClock(START)
    source = FakeSource(clock)
    sender = FakeSender([CollectorUnavailable("down")] * 5)

    assert await make_loop(clock, source, sender).run_once(attempts=3) is False
    assert len(sender.sent) == 3
    assert source.commits == []


async def test_the_loop_retries_until_the_next_window_is_due_then_moves_on():
    clock = ManualClock(START)
    source = FakeSource(clock)
    loop: AgentLoop

    def script(sender: FakeSender) -> None:
        if len({r.report_id for r in sender.sent}) == 2:
            loop.stop()

    sender = FakeSender([CollectorUnavailable("down")] * 1000, on_send=script)
    loop = make_loop(clock, source, sender)

    await loop.run()

    first, second = source.collected[0][0], source.collected[1][0]
    assert second == Window(first.end, first.end + INTERVAL)
    assert source.collected[1][1] == second.end + OFFSET
    first_attempts = [r for r in sender.sent if r.window_end == first.end]
    assert len(first_attempts) > 3
    assert source.commits == []


async def test_a_failing_cycle_does_not_stop_the_loop():
    clock = ManualClock(START)
    source = FakeSource(clock, fail_first=1)
    loop: AgentLoop
    sender = FakeSender(on_send=lambda s: loop.stop())
    loop = make_loop(clock, source, sender)

    await loop.run()

    assert len(source.collected) == 2
    assert len(sender.sent) == 1


class BlockingClock(ManualClock):
    """Its sleep never ends by itself, like a long real wait."""

    async def sleep(self, seconds: float) -> None:
        await asyncio.Event().wait()


async def test_stop_ends_a_waiting_loop():
    clock = BlockingClock(START)
    loop = make_loop(clock, FakeSource(clock), FakeSender())
    task = asyncio.create_task(loop.run())
    await asyncio.sleep(0)

    loop.stop()

    await asyncio.wait_for(task, timeout=5)
    assert task.done()


@pytest.mark.parametrize("attempt", range(1, 12))
def test_backoff_stays_within_its_cap(attempt):
    delay = RetryPolicy(initial=1.0, maximum=30.0).delay(attempt, random.Random(attempt))

    assert min(30.0, 2 ** (attempt - 1)) / 2 <= delay <= min(30.0, 2 ** (attempt - 1))
