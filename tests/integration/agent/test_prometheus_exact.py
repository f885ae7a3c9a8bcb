"""Exact counter deltas and storage peaks against a real Prometheus filled by promtool backfill."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from agent.adapters.prometheus import PrometheusSource
from agent.services.collect import ReportCollector
from agent.services.providers import PrometheusCounter, PrometheusPeak
from common.windows import Window, windows_between
from tests.support.prometheus import Family, Series, openmetrics_text

pytestmark = pytest.mark.prometheus

DAY = datetime(2023, 1, 10, tzinfo=UTC)
T0 = DAY + timedelta(hours=6)
HOUR = timedelta(hours=1)
STEP = 15
SELECTOR = "mqtt_messages_received_total"


@dataclass
class CounterSeries:
    """A counter generated sample by sample, with the true messages behind each sample."""

    labels: dict[str, str]
    samples: list[tuple[float, float]] = field(default_factory=list)
    truth: list[tuple[float, int]] = field(default_factory=list)
    value: int = 0

    def add(self, timestamp: datetime, messages: int, *, reset: bool = False) -> None:
        # A reset happens right after the previous scrape, so every message is visible.
        self.value = messages if reset else self.value + messages
        self.samples.append((timestamp.timestamp(), float(self.value)))
        self.truth.append((timestamp.timestamp(), messages))

    def messages_in(self, window: Window) -> int:
        start, end = window.start.timestamp(), window.end.timestamp()
        return sum(n for t, n in self.truth if start < t <= end)


def _counters() -> list[CounterSeries]:
    broker_a = CounterSeries({"broker": "a", "job": "mqtt"})
    broker_a.value = 1_000_000  # long-running before the history starts
    moment = T0 - HOUR
    reset_at = T0 + HOUR + timedelta(minutes=17)
    while moment <= T0 + 4 * HOUR:
        index = int((moment - T0).total_seconds()) // STEP
        broker_a.add(moment, (index * 7919) % 13, reset=moment == reset_at)
        moment += timedelta(seconds=STEP)
    # Appears mid-window; its first sample counts in full (from 0).
    broker_b = CounterSeries({"broker": "b", "job": "mqtt"})
    moment = T0 + HOUR + timedelta(minutes=20, seconds=5)
    broker_b.add(moment, 42)
    while moment < T0 + 3 * HOUR:
        moment += timedelta(seconds=STEP)
        broker_b.add(moment, 3)
    return [broker_a, broker_b]


COUNTERS = _counters()
STORAGE_PEAK_BYTES = 12_345_678_901


def _storage() -> Family:
    series = []
    for pvc, base in (("data", 10_000_000_000), ("logs", 2_000_000_000)):
        samples = []
        moment = T0
        while moment <= T0 + 2 * HOUR:
            samples.append((moment.timestamp(), float(base)))
            moment += timedelta(seconds=STEP)
        series.append(Series({"persistentvolumeclaim": pvc}, samples))
    peak_at = (T0 + timedelta(minutes=33)).timestamp()
    data = series[0].samples
    index = next(i for i, (t, _) in enumerate(data) if t == peak_at)
    data[index] = (peak_at, float(STORAGE_PEAK_BYTES - 2_000_000_000))
    return Family("kubelet_volume_stats_used_bytes", "gauge", series)


@pytest.fixture(scope="module")
def prometheus_url(prometheus_factory) -> str:
    messages = Family(
        "mqtt_messages_received",
        "counter",
        [Series(c.labels, c.samples) for c in COUNTERS],
    )
    return prometheus_factory(openmetrics_text([messages, _storage()]))


@pytest.fixture
def source(prometheus_url: str):
    prometheus = PrometheusSource(prometheus_url, retries=0)
    yield prometheus
    prometheus.close()


def _truth(window: Window) -> int:
    return sum(c.messages_in(window) for c in COUNTERS)


@pytest.mark.parametrize(
    "window",
    [
        Window(T0, T0 + HOUR),
        Window(T0 + HOUR, T0 + 2 * HOUR),  # the reset and the new series
        Window(T0 + 2 * HOUR, T0 + 3 * HOUR),
        Window(T0 + HOUR + timedelta(minutes=17), T0 + HOUR + timedelta(minutes=18)),
    ],
    ids=["plain", "reset-and-new-series", "after", "starts-on-reset-sample"],
)
async def test_window_delta_is_exactly_the_messages_in_the_window(source, window):
    provider = PrometheusCounter("mqtt_messages", source, SELECTOR)

    measured = await provider.measure(window)

    assert measured.metrics == {"mqtt_messages": _truth(window)}
    assert isinstance(measured.metrics["mqtt_messages"], int)


@pytest.mark.parametrize("minutes", [60, 10, 15, 7])
async def test_consecutive_windows_sum_to_the_truth_without_double_counting(source, minutes):
    provider = PrometheusCounter("mqtt_messages", source, SELECTOR)
    windows = windows_between(T0, T0 + 3 * HOUR, timedelta(minutes=minutes))

    deltas = [(await provider.measure(w)).metrics["mqtt_messages"] for w in windows]

    assert deltas == [_truth(w) for w in windows]
    assert sum(deltas) == _truth(Window(windows[0].start, windows[-1].end))


async def test_window_reads_raw_samples_and_baselines(source):
    counters = await source.counter_window(SELECTOR, Window(T0 + HOUR, T0 + 2 * HOUR))

    assert counters.series_count == 2
    broker_b = (("broker", "b"), ("job", "mqtt"))
    assert broker_b not in counters.baselines
    assert counters.samples[broker_b][0] == Decimal(42)


async def test_storage_is_the_window_peak_in_gigabytes(source):
    provider = PrometheusPeak("storage_gb", source, "sum(kubelet_volume_stats_used_bytes)")

    measured = await provider.measure(Window(T0, T0 + HOUR))

    assert measured.metrics == {"storage_gb": 12.345678901}


async def test_selector_without_series_is_unmeasured_not_zero(source):
    collector = ReportCollector(
        customer_id="c",
        instance_id="i",
        providers=[
            PrometheusCounter("mqtt_messages", source, "no_such_counter_total"),
            PrometheusPeak("storage_gb", source, "sum(kubelet_volume_stats_used_bytes)"),
        ],
        agent_version="test",
    )

    collected = await collector.collect(Window(T0, T0 + HOUR))

    assert "mqtt_messages" not in collected.report.metrics
    assert collected.report.unmeasured == ["mqtt_messages"]
    assert collected.report.coverage["mqtt_messages"].samples == 0
    assert not collected.report.complete
    assert collected.report.metrics["storage_gb"] == 12.345678901


async def test_series_cap_gives_a_missing_metric(prometheus_url):
    capped = PrometheusSource(prometheus_url, retries=0, max_series=1)
    collector = ReportCollector(
        customer_id="c",
        instance_id="i",
        providers=[PrometheusCounter("mqtt_messages", capped, SELECTOR)],
        agent_version="test",
    )
    try:
        collected = await collector.collect(Window(T0 + HOUR, T0 + 2 * HOUR))
    finally:
        capped.close()

    assert collected.report.metrics == {}
    assert collected.report.missing == ["mqtt_messages"]


async def test_a_window_over_the_sample_cap_is_read_in_parts_not_dropped(prometheus_url):
    window = Window(T0 + HOUR, T0 + 3 * HOUR)
    capped = PrometheusSource(prometheus_url, retries=0, max_samples=50)
    try:
        measured = await PrometheusCounter("mqtt_messages", capped, SELECTOR).measure(window)
    finally:
        capped.close()

    assert measured.metrics == {"mqtt_messages": _truth(window)}
    assert measured.coverage["mqtt_messages"].samples > 50
