"""Providers turn raw source readings into report metrics: exact counter deltas, peaks, devices."""

from __future__ import annotations

from decimal import ROUND_CEILING, Context, Decimal

import structlog

from agent.adapters.counter_state import CounterMemory
from agent.adapters.prometheus import CounterWindow
from agent.errors import NoDataError, StateError
from agent.services.counter_memory import baselines, remember, usable_memory
from agent.services.counters import as_report_number, window_increase
from agent.services.sources import (
    CounterMemoryStore,
    CounterWindowSource,
    DeviceSource,
    Measurement,
    PeakSource,
)
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
    """

    def __init__(
        self,
        metric: str,
        source: CounterWindowSource,
        selector: str,
        memory: CounterMemoryStore | None = None,
    ) -> None:
        self._metric = metric
        self._source = source
        self._selector = selector
        self._memory = memory

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

    async def measure(self, window: Window) -> Measurement:
        memory = usable_memory(self._load(), self._selector, window)
        if memory is None:
            counters = await self._source.counter_window(self._selector, window)
        else:
            try:
                counters = await self._source.counter_window(
                    self._selector, window, since=memory.as_of
                )
            except NoDataError:
                if not memory.series:
                    raise
                # Every series the agent knows was quiet since it last read them: nothing grew.
                counters = CounterWindow()
        increase = window_increase(baselines(counters, memory), counters.samples)
        store = self._memory
        if store is None:
            return Measurement(metrics={self._metric: as_report_number(increase)})
        updated = remember(self._selector, window, counters, memory)
        return Measurement(
            metrics={self._metric: as_report_number(increase)},
            commit=lambda: store.save(updated),
        )


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
