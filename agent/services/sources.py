"""What the report builder needs from each source, as protocols, and what a measurement is."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from agent.adapters.counter_state import CounterMemory
from agent.adapters.device_api import DeviceCounts
from agent.adapters.metrics_scrape import Scrape
from agent.adapters.prometheus import CounterWindow, GaugeSamples, GridPeak
from agent.adapters.scrape_state import ScrapeBaselines
from common.schema import MetricCoverage
from common.windows import Window


class CounterWindowSource(Protocol):
    """Raw counter samples in a window, with each series' baseline (Prometheus)."""

    async def counter_window(
        self, selector: str, window: Window, *, since: datetime | None = None
    ) -> CounterWindow: ...


class PeakSource(Protocol):
    """A gauge's raw samples around a window, or an expression's peak on a grid (Prometheus)."""

    async def gauge_samples(
        self, selector: str, window: Window, lookback: timedelta
    ) -> GaugeSamples: ...

    async def peak(self, expression: str, window: Window) -> GridPeak: ...


class DeviceSource(Protocol):
    """Device totals from the customer's device API."""

    async def count(self) -> DeviceCounts: ...


class ScrapeSource(Protocol):
    """The current samples of a /metrics endpoint."""

    async def scrape(self) -> Scrape: ...


class CounterMemoryStore(Protocol):
    """Where a Prometheus counter metric's last seen series values survive a restart."""

    def load(self) -> CounterMemory | None: ...

    def save(self, memory: CounterMemory) -> None: ...


class BaselineStore(Protocol):
    """Where scraped counter baselines survive a restart."""

    def load(self) -> ScrapeBaselines | None: ...

    def save(self, baselines: ScrapeBaselines) -> None: ...


@dataclass(frozen=True)
class Measurement:
    """What one provider measured for a window.

    ``missing`` names metrics the provider could not measure this time (the source failed);
    ``unmeasured`` those whose source answered with no sample in the window, so no value, not 0.
    ``commit`` persists state (e.g. new counter baselines) and must run only once the report is
    safely delivered.
    """

    metrics: dict[str, int | float] = field(default_factory=dict)
    active_devices: int | None = None
    total_devices: int | None = None
    missing: tuple[str, ...] = ()
    unmeasured: tuple[str, ...] = ()
    coverage: dict[str, MetricCoverage] = field(default_factory=dict)
    commit: Callable[[], None] | None = None


class MetricProvider(Protocol):
    """Measures some report metrics for a window; on failure all of ``metrics`` are missing.

    ``keeps_history`` is true when the source still holds the window's samples later (Prometheus),
    so a failed window can wait and be measured exactly once the source is back.
    """

    @property
    def metrics(self) -> tuple[str, ...]: ...

    @property
    def keeps_history(self) -> bool: ...

    async def measure(self, window: Window) -> Measurement: ...
