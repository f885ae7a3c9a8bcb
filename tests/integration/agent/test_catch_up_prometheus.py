"""Catch-up after 24 missed hourly windows against a real Prometheus, with counter resets.

Prometheus is filled by promtool backfill. The agent reports one window, is down for a day,
then collects the 24 missed windows one by one with queries at each window's end. Every delta
must equal the messages behind the samples exactly, across the resets. A second agent with its
own state collecting the same windows sends the same report ids: the real collector stores
each window once.

A third case cuts two of the missed windows at billing-period boundaries the collector named
(one between samples, one exactly on a sample that is a counter reset): each piece is its own
report, with exactly the messages behind its own samples.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client import CollectorRegistry

from agent.cli.wiring import build_runtime
from agent.settings import load_settings
from common.clock import ManualClock
from common.windows import Window
from tests.integration.agent.real_collector import stored_reports
from tests.integration.agent.test_cli import SEED_NAMES
from tests.support.collector import count_rows_async
from tests.support.prometheus import Family, Series, openmetrics_text

pytestmark = pytest.mark.prometheus

HOUR = timedelta(hours=1)
# Recent enough for the collector's 35-day rule, old enough to be out of Prometheus' head block.
T0 = (datetime.now(UTC) - timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
STEP = timedelta(seconds=60)
SELECTOR = "mqtt_messages_received_total"


@dataclass
class Counter:
    labels: dict[str, str]
    value: int = 0
    samples: list[tuple[float, float]] = field(default_factory=list)
    truth: list[tuple[datetime, int]] = field(default_factory=list)

    def add(self, moment: datetime, messages: int, *, reset: bool = False) -> None:
        self.value = messages if reset else self.value + messages
        self.samples.append((moment.timestamp(), float(self.value)))
        self.truth.append((moment, messages))

    def messages_in(self, window: Window) -> int:
        return sum(n for t, n in self.truth if window.start < t <= window.end)


def _counters() -> list[Counter]:
    a = Counter({"broker": "a"}, value=5_000_000)
    b = Counter({"broker": "b"})
    resets_a = {T0 + timedelta(hours=h, minutes=m) for h, m in ((3, 17), (11, 0), (19, 42))}
    resets_b = {T0 + timedelta(hours=7, minutes=1), T0 + timedelta(hours=22, minutes=59)}
    moment = T0 - HOUR
    index = 0
    while moment <= T0 + 26 * HOUR:
        a.add(moment, (index * 7919) % 31, reset=moment in resets_a)
        if moment >= T0 + timedelta(hours=2, minutes=30):  # appears inside the gap
            b.add(moment, (index * 104729) % 17 + 1, reset=moment in resets_b)
        moment += STEP
        index += 1
    return [a, b]


COUNTERS = _counters()


def truth(window: Window) -> int:
    return sum(c.messages_in(window) for c in COUNTERS)


@pytest.fixture(scope="module")
def prometheus_url(prometheus_factory) -> str:
    family = Family(
        "mqtt_messages_received", "counter", [Series(c.labels, c.samples) for c in COUNTERS]
    )
    return prometheus_factory(openmetrics_text([family]))


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("AGENT_") or name.upper() in SEED_NAMES:
            monkeypatch.delenv(name)
    monkeypatch.delenv("COLLECTION_INTERVAL", raising=False)


class NamingPeriods(httpx.AsyncBaseTransport):
    """The network to the real collector, whose accepted answers name ``periods``.

    As a collector answers for a customer linked to a Stripe subscription.
    """

    def __init__(self, periods: list[tuple[datetime, datetime]]) -> None:
        self._network = httpx.AsyncHTTPTransport()
        self._periods = [{"start": s.isoformat(), "end": e.isoformat()} for s, e in periods]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._network.handle_async_request(request)
        if not 200 <= response.status_code < 300:
            return response
        body = json.loads(await response.aread())
        return httpx.Response(response.status_code, json={**body, "billing_periods": self._periods})

    async def aclose(self) -> None:
        await self._network.aclose()


async def run_agent_once(
    prometheus_url,
    collector_url,
    state_dir,
    clock,
    *,
    customer_id: str = "cust-catchup",
    transport: httpx.AsyncBaseTransport | None = None,
) -> CollectorRegistry:
    settings = load_settings(
        customer_id=customer_id,
        instance_id="inst-1",
        collector_url=collector_url,
        prometheus_url=prometheus_url,
        mqtt_messages_query=SELECTOR,
        storage_bytes_query="",
        interval="1h",
        query_offset="30s",
        state_dir=state_dir,
    )
    registry = CollectorRegistry()
    runtime = await build_runtime(settings, clock, registry=registry, transport=transport)
    try:
        assert (await runtime.loop.run_once(attempts=3)).accepted
    finally:
        await runtime.aclose()
    return registry


async def test_24_missed_hourly_windows_are_caught_up_with_exact_deltas(
    prometheus_url, real_collector, tmp_path
):
    clock = ManualClock(T0 + HOUR + timedelta(minutes=1))
    await run_agent_once(prometheus_url, real_collector.url, tmp_path / "a", clock)
    clock.advance(24 * HOUR)  # the agent was down for a day

    await run_agent_once(prometheus_url, real_collector.url, tmp_path / "a", clock)

    reports = stored_reports(real_collector, "cust-catchup")
    windows = [Window(T0 + i * HOUR, T0 + (i + 1) * HOUR) for i in range(25)]
    assert [datetime.fromisoformat(r["window_start"]) for r in reports] == [
        w.start for w in windows
    ]
    assert [r["metrics"]["mqtt_messages"] for r in reports] == [truth(w) for w in windows]
    assert all(not r["partial"] for r in reports)

    # A second agent (its own empty state) reporting the same windows changes nothing.
    clock.set(T0 + HOUR + timedelta(minutes=1))
    await run_agent_once(prometheus_url, real_collector.url, tmp_path / "b", clock)
    clock.advance(24 * HOUR)
    registry = await run_agent_once(prometheus_url, real_collector.url, tmp_path / "b", clock)

    assert (
        registry.get_sample_value("usage_agent_reports_sent_total", {"result": "duplicate"}) == 24
    )
    database = real_collector.settings.database_url.get_secret_value()
    assert await count_rows_async(database) == 25


async def test_windows_cut_at_billing_period_boundaries_split_the_increments_exactly(
    prometheus_url, real_collector, tmp_path
):
    between_samples = T0 + timedelta(hours=5, minutes=34, seconds=56)
    on_a_reset = T0 + timedelta(hours=19, minutes=42)  # broker a resets exactly here
    network = NamingPeriods(
        [
            (between_samples - timedelta(days=30), between_samples),
            (between_samples, on_a_reset),
            (on_a_reset, on_a_reset + timedelta(days=30)),
        ]
    )
    clock = ManualClock(T0 + HOUR + timedelta(minutes=1))
    run = dict(customer_id="cust-periods", transport=network)
    # The first window is reported and the answer names the periods; then a day is missed.
    await run_agent_once(prometheus_url, real_collector.url, tmp_path / "c", clock, **run)
    clock.advance(24 * HOUR)

    await run_agent_once(prometheus_url, real_collector.url, tmp_path / "c", clock, **run)

    edges = sorted({T0 + i * HOUR for i in range(26)} | {between_samples, on_a_reset})
    pieces = [Window(s, e) for s, e in itertools.pairwise(edges)]
    reports = stored_reports(real_collector, "cust-periods")
    assert [
        (datetime.fromisoformat(r["window_start"]), datetime.fromisoformat(r["window_end"]))
        for r in reports
    ] == [(w.start, w.end) for w in pieces]
    assert [r["metrics"]["mqtt_messages"] for r in reports] == [truth(w) for w in pieces]
    by_window = {datetime.fromisoformat(r["window_start"]): r for r in reports}
    for boundary in (between_samples, on_a_reset):
        hour = T0 + (boundary - T0) // HOUR * HOUR
        before = by_window[hour]["metrics"]["mqtt_messages"]
        after = by_window[boundary]["metrics"]["mqtt_messages"]
        assert before + after == truth(Window(hour, hour + HOUR))
        assert before > 0
        assert after > 0
