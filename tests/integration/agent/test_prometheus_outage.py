"""Prometheus outages against a real Prometheus (promtool backfill) and the real collector.

Two kinds of outage lose nothing and invent nothing:

- **Prometheus unreachable** for longer than ``AGENT_PARTIAL_AFTER``: the samples are still in
  Prometheus, so the windows wait and are measured exactly, each from its own baseline, once it
  answers. Before, they were sent partial and their usage was never billed.
- **Prometheus down, so nothing was scraped**: the windows with no sample at all are reported
  ``unmeasured``, never as a measured 0, and the first window with samples counts the increase.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from agent.cli.wiring import build_runtime
from agent.settings import load_settings
from common.clock import ManualClock
from common.windows import Window
from tests.integration.agent.real_collector import stored_reports
from tests.integration.agent.test_cli import SEED_NAMES
from tests.support.binaries import free_port
from tests.support.prometheus import Family, Series, openmetrics_text

pytestmark = pytest.mark.prometheus

HOUR = timedelta(hours=1)
T0 = (datetime.now(UTC) - timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
STEP = timedelta(seconds=60)
SCRAPE_GAP = Window(T0 + 3 * HOUR, T0 + 5 * HOUR)  # Prometheus scraped nothing in here


@dataclass
class Counter:
    labels: dict[str, str]
    gap: Window | None = None
    value: int = 7_000_000
    samples: list[tuple[float, float]] = field(default_factory=list)
    truth: list[tuple[datetime, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        moment, index = T0 - HOUR, 0
        while moment <= T0 + 9 * HOUR:
            messages = (index * 7919) % 29 + 1
            self.value += messages
            self.truth.append((moment, messages))
            if self.gap is None or not self.gap.start < moment <= self.gap.end:
                self.samples.append((moment.timestamp(), float(self.value)))
            moment += STEP
            index += 1

    @property
    def selector(self) -> str:
        labels = ",".join(f'{k}="{v}"' for k, v in self.labels.items())
        return f"mqtt_messages_received_total{{{labels}}}"

    def messages_in(self, window: Window) -> int:
        return sum(n for t, n in self.truth if window.start < t <= window.end)


STEADY = Counter({"broker": "steady"})
GAPPED = Counter({"broker": "gapped"}, gap=SCRAPE_GAP)
WINDOWS = [Window(T0 + i * HOUR, T0 + (i + 1) * HOUR) for i in range(8)]


@pytest.fixture(scope="module")
def prometheus_url(prometheus_factory) -> str:
    family = Family(
        "mqtt_messages_received",
        "counter",
        [Series(c.labels, c.samples) for c in (STEADY, GAPPED)],
    )
    return prometheus_factory(openmetrics_text([family]))


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("AGENT_") or name.upper() in SEED_NAMES:
            monkeypatch.delenv(name)


async def run_once(prometheus_url, collector_url, state_dir, clock, counter, customer_id):
    settings = load_settings(
        customer_id=customer_id,
        instance_id="inst-1",
        collector_url=collector_url,
        prometheus_url=prometheus_url,
        mqtt_messages_query=counter.selector,
        storage_bytes_query="",
        interval="1h",
        query_offset="30s",
        scrape_interval="60s",
        partial_after="1h",
        http_timeout="2s",
        state_dir=state_dir,
    )
    runtime = await build_runtime(settings, clock, registry=CollectorRegistry())
    try:
        return await runtime.loop.run_once(attempts=2)
    finally:
        await runtime.aclose()


async def test_windows_wait_for_an_unreachable_prometheus_and_are_then_billed_exactly(
    prometheus_url, real_collector, tmp_path
):
    unreachable = f"http://127.0.0.1:{free_port()}"
    clock = ManualClock(T0 + HOUR + timedelta(minutes=1))
    run = dict(counter=STEADY, customer_id="cust-outage")
    assert (await run_once(prometheus_url, real_collector.url, tmp_path, clock, **run)).accepted

    for _ in range(4):  # four hours of outage, well past AGENT_PARTIAL_AFTER
        clock.advance(HOUR)
        result = await run_once(unreachable, real_collector.url, tmp_path, clock, **run)
        assert not result.accepted
        assert "retried until Prometheus answers" in result.reason
    assert len(stored_reports(real_collector, "cust-outage")) == 1

    clock.set(T0 + 8 * HOUR + timedelta(minutes=1))
    assert (await run_once(prometheus_url, real_collector.url, tmp_path, clock, **run)).accepted

    reports = stored_reports(real_collector, "cust-outage")
    assert [datetime.fromisoformat(r["window_start"]) for r in reports] == [
        w.start for w in WINDOWS
    ]
    assert [r["metrics"]["mqtt_messages"] for r in reports] == [
        STEADY.messages_in(w) for w in WINDOWS
    ]
    assert not any(r["partial"] or r["missing"] for r in reports)


async def test_windows_without_samples_are_unmeasured_and_the_next_one_counts_their_usage(
    prometheus_url, real_collector, tmp_path
):
    clock = ManualClock(T0 + HOUR + timedelta(minutes=1))
    run = dict(counter=GAPPED, customer_id="cust-gap")
    assert (await run_once(prometheus_url, real_collector.url, tmp_path, clock, **run)).accepted
    clock.set(T0 + 8 * HOUR + timedelta(minutes=1))

    assert (await run_once(prometheus_url, real_collector.url, tmp_path, clock, **run)).accepted

    reports = {
        datetime.fromisoformat(r["window_start"]): r
        for r in stored_reports(real_collector, "cust-gap")
    }
    assert sorted(reports) == [w.start for w in WINDOWS]
    for window in WINDOWS:
        report = reports[window.start]
        coverage = report["coverage"]["mqtt_messages"]
        if window.start in (SCRAPE_GAP.start, SCRAPE_GAP.start + HOUR):
            assert "mqtt_messages" not in report["metrics"]  # not a measured 0
            assert report["unmeasured"] == ["mqtt_messages"]
            assert report["complete"] is False
            assert (coverage["samples"], coverage["expected"]) == (0, 60)
        else:
            assert report["unmeasured"] == []
            assert report["complete"] is True
            assert (coverage["samples"], coverage["expected"]) == (60, 60)
    after_gap = WINDOWS[5]
    assert reports[after_gap.start]["metrics"]["mqtt_messages"] == GAPPED.messages_in(
        Window(SCRAPE_GAP.start, after_gap.end)
    )
    assert sum(r["metrics"].get("mqtt_messages", 0) for r in reports.values()) == (
        GAPPED.messages_in(Window(WINDOWS[0].start, WINDOWS[-1].end))
    )
