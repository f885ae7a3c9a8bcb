"""Direct /metrics scrapes: parsing, selectors, resets, new series and persisted baselines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from agent.adapters.metrics_scrape import (
    MetricsScrapeSource,
    SeriesSelector,
    parse_metrics_text,
)
from agent.adapters.scrape_state import JsonBaselineStore
from agent.errors import ConfigurationError, SourceError, StateError
from agent.services.scraped_counters import ScrapedCounters
from common.clock import ManualClock
from common.windows import Window
from demo.simulator import Simulator

START = datetime(2024, 3, 1, 10, tzinfo=UTC)
SELECTORS = {"mqtt_messages": "mqtt_messages_received_total"}


def window(n: int) -> Window:
    return Window(START + timedelta(minutes=n), START + timedelta(minutes=n + 1))


class TextSource:
    """A /metrics endpoint whose text the test sets."""

    def __init__(self, text: str = "") -> None:
        self.text = text

    async def scrape(self):
        return parse_metrics_text(self.text)


def counter_text(**brokers: int) -> str:
    lines = ["# TYPE mqtt_messages_received_total counter"]
    lines += [f'mqtt_messages_received_total{{broker="{b}"}} {v}' for b, v in brokers.items()]
    return "\n".join(lines) + "\n"


def test_parse_and_select():
    scrape = parse_metrics_text(
        counter_text(a=12, b=1500) + 'api_requests_total{code="200"} 3\nup 1\n'
    )

    selected = scrape.select(SeriesSelector.parse('mqtt_messages_received_total{broker!="b"}'))

    assert selected == {(("broker", "a"),): 12}


@pytest.mark.parametrize("text", ["sum(x)", "rate(x[5m])", 'x{a=~"b.*"}', "x{a=b}"])
def test_selectors_a_scrape_cannot_evaluate_are_configuration_errors(text):
    with pytest.raises(ConfigurationError):
        SeriesSelector.parse(text)


def test_malformed_text_is_a_source_error():
    with pytest.raises(SourceError):
        parse_metrics_text("mqtt_messages_received_total{broker= 12\n")


async def test_deltas_follow_the_counter_across_a_reset_and_a_new_series(tmp_path):
    source = TextSource(counter_text(a=100))
    counters = ScrapedCounters(source, JsonBaselineStore(tmp_path), SELECTORS, ManualClock(START))
    await counters.prime()

    async def measure(n: int) -> int | float | None:
        measurement = await counters.measure(window(n))
        assert measurement.commit is not None
        measurement.commit()
        return measurement.metrics.get("mqtt_messages")

    source.text = counter_text(a=130)
    assert await measure(0) == 30
    source.text = counter_text(a=4)  # broker restarted
    assert await measure(1) == 4
    source.text = counter_text(a=10, b=7)  # b appears after the first scrape: counts from 0
    assert await measure(2) == 6 + 7
    source.text = counter_text(b=9)  # a vanished
    assert await measure(3) == 2


async def test_uncommitted_usage_rolls_into_the_next_window(tmp_path):
    source = TextSource(counter_text(a=0))
    counters = ScrapedCounters(source, JsonBaselineStore(tmp_path), SELECTORS, ManualClock(START))
    await counters.prime()

    source.text = counter_text(a=50)
    undelivered = await counters.measure(window(0))
    source.text = counter_text(a=80)
    delivered = await counters.measure(window(1))

    assert undelivered.metrics == {"mqtt_messages": 50}
    assert delivered.metrics == {"mqtt_messages": 80}


async def test_without_a_baseline_the_window_is_missing_not_zero(tmp_path):
    source = TextSource(counter_text(a=500))
    store = JsonBaselineStore(tmp_path)
    counters = ScrapedCounters(source, store, SELECTORS, ManualClock(START))

    first = await counters.measure(window(0))
    source.text = counter_text(a=520)
    second = await counters.measure(window(1))

    assert first.metrics == {}
    assert first.missing == ("mqtt_messages",)
    assert second.metrics == {"mqtt_messages": 20}


async def test_baselines_survive_a_restart_and_a_corrupt_file_is_rebaselined(tmp_path):
    source = TextSource(counter_text(a=10))
    store = JsonBaselineStore(tmp_path)
    await ScrapedCounters(source, store, SELECTORS, ManualClock(START)).prime()

    source.text = counter_text(a=25)
    restarted = ScrapedCounters(source, JsonBaselineStore(tmp_path), SELECTORS, ManualClock(START))
    await restarted.prime()
    assert (await restarted.measure(window(0))).metrics == {"mqtt_messages": 15}

    store.path.write_text("{not json")
    with pytest.raises(StateError):
        store.load()
    assert (await restarted.measure(window(1))).missing == ("mqtt_messages",)
    assert store.load() is not None


async def test_absent_counter_is_missing(tmp_path):
    source = TextSource("up 1\n")
    counters = ScrapedCounters(source, JsonBaselineStore(tmp_path), SELECTORS, ManualClock(START))
    await counters.prime()

    measurement = await counters.measure(window(0))

    assert measurement.metrics == {}
    assert measurement.missing == ("mqtt_messages",)


async def test_committed_deltas_equal_the_simulator_ground_truth(tmp_path):
    with Simulator(devices=1, active=1, brokers=("b0", "b1")) as simulator:
        async with httpx.AsyncClient(timeout=5) as client:
            source = MetricsScrapeSource(client, f"{simulator.url}/metrics")
            counters = ScrapedCounters(
                source, JsonBaselineStore(tmp_path), SELECTORS, ManualClock(START)
            )
            simulator.add_messages(1000, "b0")  # before the agent starts: not billed
            await counters.prime()
            billed = 0
            for n, (b0, b1, reset) in enumerate(
                [(5, 0, False), (17, 3, False), (0, 0, True), (8, 11, False), (2, 2, False)]
            ):
                if reset:
                    simulator.reset_counter("b0")
                simulator.add_messages(b0, "b0")
                simulator.add_messages(b1, "b1")
                measurement = await counters.measure(window(n))
                assert measurement.commit is not None
                measurement.commit()
                billed += int(measurement.metrics["mqtt_messages"])

    assert billed == simulator.truth_since_first_scrape() == 48


async def test_unreachable_endpoint_is_a_source_error():
    async with httpx.AsyncClient(timeout=1) as client:
        source = MetricsScrapeSource(client, "http://127.0.0.1:9/metrics")
        with pytest.raises(SourceError):
            await source.scrape()
