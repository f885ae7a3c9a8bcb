"""Providers turn raw source readings into report metrics: exact counter deltas, peaks, devices."""

from __future__ import annotations

from decimal import ROUND_CEILING, Context, Decimal

from agent.services.counters import as_report_number, window_increase
from agent.services.sources import CounterWindowSource, DeviceSource, Measurement, PeakSource
from common.windows import Window

BYTES_PER_GB = Decimal(10) ** 9
# The schema refuses more than 15 significant digits; rounding up never under-bills a peak.
_REPORT_PRECISION = Context(prec=15, rounding=ROUND_CEILING)


def bytes_to_gb(value: Decimal) -> float:
    """Bytes as GB of 10^9 bytes, kept exact up to the report's 15 significant digits."""
    gigabytes = _REPORT_PRECISION.divide(max(value, Decimal(0)), BYTES_PER_GB)
    return float(gigabytes)


class PrometheusCounter:
    """One counter metric: the exact increase of every series a selector matches."""

    def __init__(self, metric: str, source: CounterWindowSource, selector: str) -> None:
        self._metric = metric
        self._source = source
        self._selector = selector

    @property
    def metrics(self) -> tuple[str, ...]:
        return (self._metric,)

    async def measure(self, window: Window) -> Measurement:
        counters = await self._source.counter_window(self._selector, window)
        increase = window_increase(counters.baselines, counters.samples)
        return Measurement(metrics={self._metric: as_report_number(increase)})


class PrometheusPeak:
    """A gauge metric billed at its peak: the window maximum of a bytes expression, in GB."""

    def __init__(self, metric: str, source: PeakSource, expression: str) -> None:
        self._metric = metric
        self._source = source
        self._expression = expression

    @property
    def metrics(self) -> tuple[str, ...]:
        return (self._metric,)

    async def measure(self, window: Window) -> Measurement:
        peak = await self._source.peak(self._expression, window)
        return Measurement(metrics={self._metric: bytes_to_gb(peak)})


class DeviceCount:
    """``devices`` (billed) is the active count; the totals go to the report's own fields."""

    metric = "devices"

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
        )
