"""Series that go quiet or vanish for a while are compared with their last value when they return.

Prometheus mode: a counter silent for longer than the baseline lookback used to count from 0.
Direct scrape mode: a series missing from one scrape used to count from 0 when it came back.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.adapters.counter_state import CounterMemory, decode_memory, encode_memory
from agent.adapters.metrics_scrape import parse_metrics_text
from agent.adapters.prometheus import CounterWindow
from agent.adapters.scrape_state import ScrapeBaselines, decode_baselines, encode_baselines
from agent.adapters.series import SeriesKey, series_key
from agent.errors import NoDataError
from agent.services.counter_memory import FORGET_AFTER
from agent.services.providers import PrometheusCounter
from agent.services.scraped_counters import ScrapedCounters
from common.clock import ManualClock
from common.windows import Window

T = datetime(2024, 3, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
LOOKBACK = timedelta(days=1)
SELECTOR = "mqtt_messages_received_total"


class LookbackPrometheus:
    """Raw samples as Prometheus serves them, baselines found only within the lookback."""

    def __init__(self, samples: dict[SeriesKey, list[tuple[datetime, int]]]) -> None:
        self.samples = samples

    async def counter_window(
        self, selector: str, window: Window, *, since: datetime | None = None
    ) -> CounterWindow:
        lookback = LOOKBACK
        if since is not None and since < window.start:
            lookback = max(lookback, window.start - since)
        result = CounterWindow()
        for key, samples in self.samples.items():
            before = [v for t, v in samples if window.start - lookback < t <= window.start]
            inside = [(t, v) for t, v in samples if window.start < t <= window.end]
            if before:
                result.baselines[key] = Decimal(before[-1])
            if inside:
                result.samples[key] = [Decimal(v) for _, v in inside]
                result.last_seen[key] = inside[-1][0]
        if not result.samples and not result.baselines:
            raise NoDataError("prometheus", "no series")
        return result


class MemoryStore:
    """Keeps the encoded text, as the state file does."""

    def __init__(self) -> None:
        self.text: str | None = None

    def load(self) -> CounterMemory | None:
        return None if self.text is None else decode_memory(self.text)

    def save(self, memory: CounterMemory) -> None:
        self.text = encode_memory(memory)


async def bill(provider: PrometheusCounter, windows: list[Window]) -> list[int]:
    billed = []
    for window in windows:
        measured = await provider.measure(window)
        # No sample: nothing measured, and the next window with samples counts it.
        billed.append(0 if measured.unmeasured else int(measured.metrics["mqtt_messages"]))
        if measured.commit is not None:
            measured.commit()
    return billed


@st.composite
def quiet_histories(draw):
    """Counter samples with gaps of minutes to days and resets; the messages after ``T``."""
    history: dict[SeriesKey, list[tuple[datetime, int]]] = {}
    truth = 0
    for index in range(draw(st.integers(min_value=1, max_value=3))):
        old = draw(st.booleans())  # long-running before T, or new after it
        # An old series has a sample within the lookback before the agent's first window.
        moment = T - timedelta(minutes=draw(st.integers(1, 1400))) if old else T
        value = draw(st.integers(10**6, 10**9)) if old else 0
        samples = [(moment, value)] if old else []
        for _ in range(draw(st.integers(min_value=1, max_value=12))):
            moment += timedelta(minutes=draw(st.sampled_from([1, 15, 59, 61, 600, 1560, 2900])))
            messages = draw(st.integers(min_value=0, max_value=1000))
            if value > 0 and draw(st.booleans()) and messages < value:
                value = messages  # a reset right after the previous sample shows as a drop
            else:
                value += messages
            samples.append((moment, value))
            if moment > T:
                truth += messages
        history[series_key({"broker": str(index)})] = samples
    return history, truth


@settings(max_examples=60, deadline=None)
@given(quiet_histories())
async def test_window_deltas_add_up_to_the_true_increase_across_quiet_gaps(case):
    history, truth = case
    last = max(t for samples in history.values() for t, _ in samples)
    windows = [Window(T + i * HOUR, T + (i + 1) * HOUR) for i in range((last - T) // HOUR + 1)]
    provider = PrometheusCounter(
        "mqtt_messages", LookbackPrometheus(history), SELECTOR, MemoryStore()
    )

    assert sum(await bill(provider, windows)) == truth


async def test_a_series_quiet_for_26_hours_counts_from_its_last_value():
    key = series_key({"broker": "a"})
    history = {key: [(T, 1_000_000), (T + 26 * HOUR + timedelta(minutes=5), 1_000_339)]}
    windows = [Window(T + i * HOUR, T + (i + 1) * HOUR) for i in range(27)]
    provider = PrometheusCounter(
        "mqtt_messages", LookbackPrometheus(history), SELECTOR, MemoryStore()
    )
    provider_without_memory = PrometheusCounter(
        "mqtt_messages", LookbackPrometheus(history), SELECTOR
    )

    assert (await bill(provider, [Window(T - HOUR, T), *windows]))[-1] == 339
    assert (await bill(provider_without_memory, windows))[-1] == 1_000_339  # the defect


async def test_a_window_without_samples_is_unmeasured_and_the_next_one_counts_its_usage():
    key = series_key({"broker": "a"})
    history = {key: [(T, 1_000), (T + 2 * HOUR + timedelta(minutes=5), 1_090)]}
    provider = PrometheusCounter(
        "mqtt_messages", LookbackPrometheus(history), SELECTOR, MemoryStore()
    )

    quiet = await provider.measure(Window(T + HOUR, T + 2 * HOUR))
    after = await provider.measure(Window(T + 2 * HOUR, T + 3 * HOUR))

    assert quiet.metrics == {}
    assert quiet.unmeasured == ("mqtt_messages",)
    assert quiet.coverage["mqtt_messages"].samples == 0
    assert quiet.coverage["mqtt_messages"].expected == 240  # an hour of 15 s scrapes
    assert after.metrics == {"mqtt_messages": 90}
    assert after.coverage["mqtt_messages"].samples == 1


async def test_a_window_shorter_than_a_scrape_may_hold_no_sample_and_is_measured():
    key = series_key({"broker": "a"})
    history = {key: [(T, 1_000), (T + timedelta(seconds=15), 1_010)]}
    provider = PrometheusCounter("mqtt_messages", LookbackPrometheus(history), SELECTOR)

    piece = await provider.measure(Window(T + timedelta(seconds=2), T + timedelta(seconds=9)))

    assert piece.metrics == {"mqtt_messages": 0}
    assert piece.unmeasured == ()


async def test_a_memory_from_later_windows_or_another_selector_is_not_used():
    key = series_key({"broker": "a"})
    history = {key: [(T - HOUR, 100), (T + timedelta(minutes=30), 150)]}
    store = MemoryStore()
    store.save(CounterMemory(SELECTOR, T + 2 * HOUR, {}))  # e.g. a former leader's, later
    provider = PrometheusCounter("mqtt_messages", LookbackPrometheus(history), SELECTOR, store)

    assert await bill(provider, [Window(T, T + HOUR)]) == [50]
    memory = store.load()
    assert memory is not None
    assert memory.as_of == T + HOUR
    assert memory.series[key].value == 150


async def test_a_series_not_seen_for_longer_than_the_horizon_is_forgotten():
    key = series_key({"broker": "a"})
    history = {key: [(T, 500)]}
    store = MemoryStore()
    provider = PrometheusCounter("mqtt_messages", LookbackPrometheus(history), SELECTOR, store)
    await bill(provider, [Window(T - HOUR, T)])
    late = T + FORGET_AFTER + HOUR

    await bill(provider, [Window(T, late)])

    memory = store.load()
    assert memory is not None
    assert key not in memory.series


# Direct /metrics scrapes.

SCRAPE_SELECTORS = {"mqtt_messages": SELECTOR}


class ScriptedEndpoint:
    def __init__(self) -> None:
        self.values: dict[str, int] = {}

    async def scrape(self):
        lines = [f"# TYPE {SELECTOR} counter"]
        lines += [f'{SELECTOR}{{broker="{b}"}} {v}' for b, v in self.values.items()]
        return parse_metrics_text("\n".join(lines) + "\n")


class BaselineText:
    def __init__(self) -> None:
        self.text: str | None = None

    def load(self) -> ScrapeBaselines | None:
        return None if self.text is None else decode_baselines(self.text)

    def save(self, baselines: ScrapeBaselines) -> None:
        self.text = encode_baselines(baselines)


@settings(max_examples=150, deadline=None)
@given(st.data())
async def test_series_missing_from_scrapes_bill_exactly_when_they_return(data):
    """Truth: every message counted that a later scrape showed (since a reset, if there was one)."""
    brokers = [str(i) for i in range(data.draw(st.integers(1, 4)))]
    value = {b: data.draw(st.integers(0, 10**6)) for b in brokers}
    present_at_start = {b: data.draw(st.booleans()) for b in brokers}
    for b in brokers:
        if not present_at_start[b]:
            value[b] = 0  # a truly new series: it counts from 0 when it first appears
    last_shown = {b: value[b] if present_at_start[b] else None for b in brokers}
    pending = dict.fromkeys(brokers, 0)
    restarted = dict.fromkeys(brokers, False)
    endpoint = ScriptedEndpoint()
    endpoint.values = {b: value[b] for b in brokers if present_at_start[b]}
    clock = ManualClock(T)
    counters = ScrapedCounters(endpoint, BaselineText(), SCRAPE_SELECTORS, clock)
    await counters.prime()
    truth = billed = 0
    for step in range(data.draw(st.integers(1, 25))):
        clock.advance(timedelta(minutes=data.draw(st.sampled_from([1, 60, 1500]))))
        for b in brokers:
            shown = last_shown[b]
            if shown and not pending[b] and not restarted[b] and data.draw(st.booleans()):
                value[b] = data.draw(st.integers(0, shown - 1))  # the exporter restarted
                pending[b] = value[b]
                restarted[b] = True
            limit = 1000 if not restarted[b] or shown is None else shown - 1 - value[b]
            messages = data.draw(st.integers(0, max(0, limit)))
            value[b] += messages
            pending[b] += messages
        shown_now = [b for b in brokers if data.draw(st.booleans())]
        endpoint.values = {b: value[b] for b in shown_now}
        for b in shown_now:
            truth += pending[b]
            pending[b] = 0
            restarted[b] = False
            last_shown[b] = value[b]
        measured = await counters.measure(Window(T + step * HOUR, T + (step + 1) * HOUR))
        billed += int(measured.metrics.get("mqtt_messages", 0))
        assert measured.commit is not None
        measured.commit()

    assert billed == truth


async def test_a_series_missing_from_one_scrape_is_not_counted_from_zero():
    endpoint = ScriptedEndpoint()
    endpoint.values = {"a": 500, "b": 10}
    clock = ManualClock(T)
    counters = ScrapedCounters(endpoint, BaselineText(), SCRAPE_SELECTORS, clock)
    await counters.prime()
    billed = []
    for values in ({"b": 20}, {"a": 515, "b": 20}):
        clock.advance(HOUR)
        endpoint.values = values
        measured = await counters.measure(Window(clock.now() - HOUR, clock.now()))
        billed.append(measured.metrics["mqtt_messages"])
        assert measured.commit is not None
        measured.commit()

    assert billed == [10, 15]


async def test_a_series_absent_for_longer_than_the_horizon_is_dropped():
    endpoint = ScriptedEndpoint()
    endpoint.values = {"a": 500, "b": 10}
    clock = ManualClock(T)
    store = BaselineText()
    counters = ScrapedCounters(endpoint, store, SCRAPE_SELECTORS, clock)
    await counters.prime()
    endpoint.values = {"b": 20}
    for _ in range(2):
        clock.advance(FORGET_AFTER / 2 + HOUR)
        measured = await counters.measure(Window(clock.now() - HOUR, clock.now()))
        assert measured.commit is not None
        measured.commit()

    stored = store.load()
    assert stored is not None
    assert list(stored.metrics["mqtt_messages"].series) == [series_key({"broker": "b"})]
