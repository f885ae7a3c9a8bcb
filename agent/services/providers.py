"""Providers turn raw source readings into report metrics: exact counter deltas, peaks, devices."""

from __future__ import annotations

from datetime import timedelta
from decimal import ROUND_CEILING, Context, Decimal

import structlog

from agent.adapters.counter_state import CounterMemory
from agent.adapters.prometheus import SOURCE, CounterWindow
from agent.adapters.series import SeriesKey
from agent.errors import NoDataError, SourceError, StateError
from agent.services.counter_memory import baselines, remember, usable_memory
from agent.services.counters import as_report_number, window_increase
from agent.services.peak_expression import Decomposed, NotDecomposable, decompose
from agent.services.peaks import LOOKBACK_DELTA, Sample, expected_samples, window_peak
from agent.services.sources import (
    CounterMemoryStore,
    CounterWindowSource,
    DeviceSource,
    Measurement,
    PeakSource,
)
from common.schema import MetricCoverage
from common.windows import Window

log = structlog.get_logger(__name__)

BYTES_PER_GB = Decimal(10) ** 9
# The schema refuses more than 15 significant digits; rounding up never under-bills a peak.
_REPORT_PRECISION = Context(prec=15, rounding=ROUND_CEILING)


def bytes_to_gb(value: Decimal) -> float:
    """Bytes as GB of 10^9 bytes, kept exact up to the report's 15 significant digits."""
    gigabytes = _REPORT_PRECISION.divide(max(value, Decimal(0)), BYTES_PER_GB)
    return float(gigabytes)


class PrometheusCounter:
    """One counter metric: the exact increase of every series a selector matches.

    With a ``memory`` store, series the agent has seen before are measured against their
    persisted values (``services.counter_memory``); the new values are saved by the
    measurement's ``commit``, in the transaction that spools the report.

    A window in which no series has a sample, although at least one scrape fits in it, is not
    measured: the metric is reported ``unmeasured``, never 0, and the next window with samples
    counts the increase from the same baselines (``docs/agent.md``, Coverage).
    """

    keeps_history = True

    def __init__(
        self,
        metric: str,
        source: CounterWindowSource,
        selector: str,
        memory: CounterMemoryStore | None = None,
        *,
        scrape_interval: timedelta = timedelta(seconds=15),
    ) -> None:
        self._metric = metric
        self._source = source
        self._selector = selector
        self._memory = memory
        self._scrape_interval = scrape_interval

    @property
    def metrics(self) -> tuple[str, ...]:
        return (self._metric,)

    def _load(self) -> CounterMemory | None:
        if self._memory is None:
            return None
        try:
            return self._memory.load()
        except StateError as exc:
            log.warning("counter_baselines_unreadable", metric=self._metric, error=str(exc))
            return None

    def _coverage(self, counters: CounterWindow, window: Window) -> MetricCoverage:
        per_series = expected_scrapes(window, self._scrape_interval)
        series = len(counters.samples)
        return MetricCoverage(
            samples=sum(len(values) for values in counters.samples.values()),
            expected=per_series * max(series, 1),
            series=series,
        )

    async def measure(self, window: Window) -> Measurement:
        memory = usable_memory(self._load(), self._selector, window)
        try:
            if memory is None:
                counters = await self._source.counter_window(self._selector, window)
            else:
                counters = await self._source.counter_window(
                    self._selector, window, since=memory.as_of
                )
        except NoDataError:
            counters = CounterWindow()
        coverage = {self._metric: self._coverage(counters, window)}
        metrics: dict[str, int | float] = {}
        unmeasured: tuple[str, ...] = ()
        if not counters.samples and expected_scrapes(window, self._scrape_interval) > 0:
            unmeasured = self.metrics
        else:
            increase = window_increase(baselines(counters, memory), counters.samples)
            metrics[self._metric] = as_report_number(increase)
        store = self._memory
        if store is None:
            return Measurement(metrics=metrics, unmeasured=unmeasured, coverage=coverage)
        # Without samples the memory only learns the baselines, so the next window still
        # counts from the values before this one.
        updated = remember(self._selector, window, counters, memory)
        return Measurement(
            metrics=metrics,
            unmeasured=unmeasured,
            coverage=coverage,
            commit=lambda: store.save(updated),
        )


def expected_scrapes(window: Window, scrape_interval: timedelta) -> int:
    """Scrapes of one series every window of this length holds, whatever their phase."""
    return int(window.length // scrape_interval)


class PrometheusPeak:
    """A gauge metric billed at its peak: the window maximum of a bytes expression, in GB.

    A selector, or a sum of one, is rebuilt from every raw sample (``services.peaks``); any other
    expression is evaluated by Prometheus at scrape-interval steps, and its coverage says
    ``grid``. A window without a single value is unmeasured: no value, never a measured 0.
    """

    keeps_history = True

    def __init__(self, metric: str, source: PeakSource, expression: str) -> None:
        self._metric = metric
        self._source = source
        self._expression = expression
        self._decomposed = decompose(expression)
        if isinstance(self._decomposed, NotDecomposable):
            log.info("peak_method", metric=metric, method="grid", reason=self._decomposed.reason)

    @property
    def metrics(self) -> tuple[str, ...]:
        return (self._metric,)

    async def measure(self, window: Window) -> Measurement:
        if isinstance(self._decomposed, Decomposed):
            return await self._raw_peak(self._decomposed, window)
        return await self._grid_peak(window)

    async def _raw_peak(self, decomposed: Decomposed, window: Window) -> Measurement:
        gauges = await self._source.gauge_samples(decomposed.selector, window, LOOKBACK_DELTA)
        start, end = gauges.window_start_ms, gauges.window_end_ms
        groups: dict[tuple[str, ...], dict[SeriesKey, list[Sample]]] = {}
        for key, samples in gauges.series.items():
            groups.setdefault(decomposed.group_of(dict(key)), {})[key] = samples
        interval = gauges.scrape_interval_ms
        peaks = [window_peak(series, start, end, interval) for series in groups.values()]
        measured = [(peak.peak, peak) for peak in peaks if peak.peak is not None]
        if len(measured) > 1:
            raise SourceError(
                SOURCE, f"{self._expression!r} returned {len(measured)} series; wrap it in sum(...)"
            )
        if not measured:
            expected = expected_samples(end - start, interval)
            return self._unmeasured(MetricCoverage(samples=0, expected=expected, method="raw"))
        value, found = measured[0]
        coverage = MetricCoverage(
            samples=found.samples, expected=found.expected, series=found.series, method="raw"
        )
        return Measurement(
            metrics={self._metric: bytes_to_gb(value)}, coverage={self._metric: coverage}
        )

    async def _grid_peak(self, window: Window) -> Measurement:
        grid = await self._source.peak(self._expression, window)
        coverage = MetricCoverage(
            samples=grid.points, expected=grid.expected, series=grid.series, method="grid"
        )
        if grid.value is None:
            return self._unmeasured(coverage)
        return Measurement(
            metrics={self._metric: bytes_to_gb(grid.value)}, coverage={self._metric: coverage}
        )

    def _unmeasured(self, coverage: MetricCoverage) -> Measurement:
        return Measurement(unmeasured=(self._metric,), coverage={self._metric: coverage})


class DeviceCount:
    """``devices`` (billed) is the active count; the totals go to the report's own fields."""

    metric = "devices"
    keeps_history = False

    def __init__(self, source: DeviceSource) -> None:
        self._source = source

    @property
    def metrics(self) -> tuple[str, ...]:
        return (self.metric,)

    async def measure(self, window: Window) -> Measurement:
        counts = await self._source.count()
        return Measurement(
            metrics={self.metric: counts.active},
            active_devices=counts.active,
            total_devices=counts.total,
            coverage={self.metric: MetricCoverage(samples=1, expected=1, series=1, method="api")},
        )
