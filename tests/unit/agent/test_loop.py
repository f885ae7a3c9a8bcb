"""The schedule on a manual clock: aligned windows, jitter, outages, restarts, partial windows."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import pytest

from agent.errors import CollectorRejected
from agent.services.backoff import RetryPolicy
from common.clock import ManualClock
from common.windows import Window
from tests.unit.agent.agent_kit import (
    FakeCollector,
    TruthSource,
    make_agent,
    messages_in,
    stop_at,
)

START = datetime(2024, 3, 1, 10, 17, 3, tzinfo=UTC)
INTERVAL = timedelta(minutes=15)
OFFSET = timedelta(seconds=30)


def truth(windows: list[tuple[datetime, datetime]]) -> int:
    return sum(messages_in(Window(s, e)) for s, e in windows)


async def test_windows_are_aligned_and_collected_after_offset_plus_jitter(tmp_path):
    clock = ManualClock(START)
    source = TruthSource(clock)
    collector = FakeCollector(clock)
    agent = make_agent(tmp_path, clock, source, collector, jitter=timedelta(minutes=1))
    stop_at(agent, clock, START + 4 * INTERVAL)

    await agent.loop.run()

    first = datetime(2024, 3, 1, 10, 15, tzinfo=UTC)
    windows = [w for w, _ in source.collected]
    assert windows[:3] == [
        Window(first + i * INTERVAL, first + (i + 1) * INTERVAL) for i in range(3)
    ]
    delays = [at - w.end for w, at in source.collected]
    assert all(OFFSET <= d <= OFFSET + timedelta(minutes=1) for d in delays)
    assert len({d for d in delays}) > 1  # jittered, not a fixed delay
    assert collector.windows() == [(w.start, w.end) for w in windows]


@pytest.mark.parametrize("max_reports", [1000, 5], ids=["roomy-spool", "compacting-spool"])
async def test_collector_down_for_six_hours_every_window_arrives_once_with_exact_totals(
    tmp_path, max_reports
):
    clock = ManualClock(START)
    source = TruthSource(clock)
    back_at = START + timedelta(hours=6, minutes=7)
    collector = FakeCollector(clock, down=lambda now: now < back_at)
    agent = make_agent(
        tmp_path,
        clock,
        source,
        collector,
        max_reports=max_reports,
        retry=RetryPolicy(initial=1.0, maximum=600.0),
    )
    stop_at(agent, clock, back_at + 2 * INTERVAL)

    await agent.loop.run()

    windows = collector.windows()
    assert [s for s, _ in windows[1:]] == [e for _, e in windows[:-1]]  # no gap, no overlap
    assert windows[-1][1] >= back_at
    assert collector.billed("mqtt_messages") == truth(windows)
    assert collector.billed("mqtt_messages") == sum(
        messages_in(w) for w, _ in source.collected
    )  # every collected window billed, none twice
    assert agent.spool.depth() == 0
    if max_reports == 5:
        assert agent.metrics.compactions._value.get() > 0
        assert len(windows) < len(source.collected)
    else:
        assert len(windows) == len(source.collected)
    assert collector.attempts > len(windows)  # the outage was retried, with backoff


async def test_a_restart_neither_skips_nor_repeats_a_window(tmp_path):
    clock = ManualClock(START)
    collector = FakeCollector(clock)
    first = make_agent(tmp_path, clock, TruthSource(clock), collector)
    stop_at(first, clock, START + 2 * INTERVAL)
    await first.loop.run()
    first.db.close()

    clock.advance(timedelta(hours=3))  # down for three hours
    second = make_agent(tmp_path, clock, TruthSource(clock), collector)
    stop_at(second, clock, clock.now() + 2 * INTERVAL)
    await second.loop.run()

    windows = collector.windows()
    assert [s for s, _ in windows[1:]] == [e for _, e in windows[:-1]]
    assert len(windows) > 14
    assert collector.billed("mqtt_messages") == truth(windows)


async def test_catch_up_is_bounded_by_max_catchup_and_says_so(tmp_path):
    clock = ManualClock(START)
    collector = FakeCollector(clock)
    first = make_agent(tmp_path, clock, TruthSource(clock), collector)
    await first.loop.run_once(attempts=1)
    first.db.close()

    clock.advance(timedelta(days=2))
    source = TruthSource(clock)
    second = make_agent(tmp_path, clock, source, collector, max_catchup=timedelta(hours=5))
    await second.loop.run_once(attempts=1)

    windows = [w for w, _ in source.collected]
    assert windows[0].start - (clock.now() - timedelta(hours=5)) < INTERVAL
    assert windows[0].start >= clock.now() - timedelta(hours=5)
    assert all(a.end == b.start for a, b in itertools.pairwise(windows))
    assert second.metrics.windows_skipped._value.get() > 0


async def test_a_failed_source_is_retried_next_cycle_then_sent_partial_never_zero(tmp_path):
    clock = ManualClock(START)
    source = TruthSource(clock)
    broken_until = START + timedelta(minutes=50)
    source.failing = lambda window: clock.now() < broken_until
    collector = FakeCollector(clock)
    agent = make_agent(tmp_path, clock, source, collector, partial_after=timedelta(hours=2))
    stop_at(agent, clock, START + 5 * INTERVAL)

    await agent.loop.run()

    first = source.collected[0][0]
    assert [w for w, _ in source.collected].count(first) > 1  # retried, not skipped
    reports = sorted(collector.stored.values(), key=lambda r: r.window_start)
    assert all("mqtt_messages" in r.metrics and not r.partial for r in reports)
    assert reports[0].window_start == first.start
    assert agent.metrics.windows_deferred._value.get() >= 1


async def test_a_window_still_failing_after_partial_after_is_sent_partial(tmp_path):
    clock = ManualClock(START)
    source = TruthSource(clock)
    source.failing = lambda window: True
    collector = FakeCollector(clock)
    agent = make_agent(tmp_path, clock, source, collector, partial_after=timedelta(minutes=20))
    stop_at(agent, clock, START + 4 * INTERVAL)

    await agent.loop.run()

    reports = list(collector.stored.values())
    assert reports
    assert all(r.partial and r.missing == ["mqtt_messages"] for r in reports)
    assert all("mqtt_messages" not in r.metrics for r in reports)  # never a made-up zero


async def test_run_once_sends_the_last_complete_window():
    clock = ManualClock(datetime(2024, 3, 1, 11, 0, 10, tzinfo=UTC))
    source = TruthSource(clock)
    collector = FakeCollector(clock)

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        agent = make_agent(Path(tmp), clock, source, collector)
        assert (await agent.loop.run_once(attempts=3)).accepted is True
        agent.db.close()

    # 11:00:10 is within the offset of 11:00, so 10:45-11:00 is not complete yet.
    assert source.collected[0][0] == Window(
        datetime(2024, 3, 1, 10, 30, tzinfo=UTC), datetime(2024, 3, 1, 10, 45, tzinfo=UTC)
    )


async def test_run_once_retries_with_capped_backoff_then_keeps_the_report(tmp_path):
    clock = ManualClock(START)
    collector = FakeCollector(clock, down=lambda now: True)
    agent = make_agent(tmp_path, clock, TruthSource(clock), collector, retry=RetryPolicy(1.0, 8.0))

    assert (await agent.loop.run_once(attempts=6)).accepted is False

    assert collector.attempts == 6
    caps = [1, 2, 4, 8, 8]
    assert all(c / 2 <= d <= c for d, c in zip(clock.slept, caps, strict=True))
    assert agent.spool.depth() == 1  # kept for the next run


async def test_a_report_the_collector_finds_invalid_is_kept_aside_not_retried(tmp_path):
    clock = ManualClock(START)

    class Refusing(FakeCollector):
        async def send(self, report):
            self.attempts += 1
            raise CollectorRejected("bad", status=422)

    collector = Refusing(clock)
    agent = make_agent(tmp_path, clock, TruthSource(clock), collector)

    assert (await agent.loop.run_once(attempts=5)).accepted is False
    assert collector.attempts == 1
    assert agent.spool.depth() == 0
    assert agent.spool.dead_count() == 1


class BlockingClock(ManualClock):
    """Its sleep never ends by itself, like a long real wait."""

    async def sleep(self, seconds: float) -> None:
        await asyncio.Event().wait()


async def test_stop_ends_a_waiting_loop(tmp_path):
    clock = BlockingClock(START)
    agent = make_agent(tmp_path, clock, TruthSource(clock), FakeCollector(clock))
    task = asyncio.create_task(agent.loop.run())
    await asyncio.sleep(0)

    agent.loop.stop()

    await asyncio.wait_for(task, timeout=5)
    assert task.done()


@pytest.mark.parametrize("attempt", range(1, 12))
def test_backoff_stays_within_its_cap(attempt):
    import random

    delay = RetryPolicy(initial=1.0, maximum=30.0).delay(attempt, random.Random(attempt))

    assert min(30.0, 2 ** (attempt - 1)) / 2 <= delay <= min(30.0, 2 ** (attempt - 1))


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_run_once_gives_up_at_once_when_the_collector_refuses_the_setup(tmp_path, status):
    clock = ManualClock(START)

    class Refusing(FakeCollector):
        async def send(self, report):
            self.attempts += 1
            raise CollectorRejected(f"HTTP {status}: check AGENT_COLLECTOR_URL", status=status)

    collector = Refusing(clock)
    agent = make_agent(tmp_path, clock, TruthSource(clock), collector)

    outcome = await agent.loop.run_once(attempts=5)

    assert outcome.accepted is False
    assert collector.attempts == 1
    assert clock.slept == []  # no five-minute backoff under --once
    assert f"HTTP {status}" in outcome.reason
    assert agent.spool.depth() == 1  # kept for the next run, once the setting is fixed


async def test_run_once_reports_nothing_due_as_accepted(tmp_path):
    clock = ManualClock(START)
    agent = make_agent(tmp_path, clock, TruthSource(clock), FakeCollector(clock))
    assert (await agent.loop.run_once(attempts=1)).accepted

    again = await agent.loop.run_once(attempts=1)

    assert again.accepted is True
    assert "nothing due" in again.reason
