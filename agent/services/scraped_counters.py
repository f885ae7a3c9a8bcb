"""Counter deltas from direct /metrics scrapes, against the previous scrape's per-series values.

A scrape is a single point in time, so the delta of a window is measured from the baseline (the
previous accepted scrape) to this scrape. The baseline is taken at agent start-up (``prime``), so
the first window already has a value covering start-up to its end; messages before start-up were
never observed and are not billed. If no baseline exists when a window is measured (start-up
scrape failed, or the state file was lost), this scrape becomes the baseline and the metric is
reported missing for that window, never as zero. New baselines are saved only through the
measurement's ``commit``, i.e. after the report was delivered, so an undelivered window's usage
rolls into the next one instead of being lost.

A series missing from a scrape keeps its last value in the baselines, so when it returns it is
compared with that value (a drop is still a reset), not counted from 0 again. A series missing
for longer than ``FORGET_AFTER`` (35 days, the rule Prometheus mode uses) is dropped; if it ever
returns it counts from 0 like a new series.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

import structlog

from agent.adapters.metrics_scrape import Scrape, SeriesSelector
from agent.adapters.scrape_state import CounterBaseline, ScrapeBaselines
from agent.adapters.series import SeriesKey
from agent.errors import StateError
from agent.services.counter_memory import FORGET_AFTER
from agent.services.counters import as_report_number, window_increase
from agent.services.sources import BaselineStore, Measurement, ScrapeSource
from common.clock import Clock
from common.schema import MetricCoverage
from common.windows import Window

log = structlog.get_logger(__name__)


def carry_absent(
    previous: CounterBaseline,
    taken_at: datetime,
    current: Mapping[SeriesKey, Decimal],
    now: datetime,
) -> CounterBaseline:
    """The new baseline: this scrape's values, plus absent series' last values for a while."""
    series = dict(current)
    seen: dict[SeriesKey, datetime] = {}
    for key, value in previous.series.items():
        if key in series:
            continue
        last_seen = previous.seen.get(key, taken_at)
        if now - last_seen <= FORGET_AFTER:
            series[key] = value
            seen[key] = last_seen
    return CounterBaseline(previous.selector, series, seen)


class ScrapedCounters:
    """Counter metrics (e.g. ``mqtt_messages``) measured by scraping /metrics once per window."""

    keeps_history = False

    def __init__(
        self,
        source: ScrapeSource,
        store: BaselineStore,
        selectors: Mapping[str, str],
        clock: Clock,
    ) -> None:
        self._source = source
        self._store = store
        self._texts = dict(selectors)
        self._selectors = {m: SeriesSelector.parse(s) for m, s in selectors.items()}
        self._clock = clock

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(self._selectors)

    def _load(self) -> ScrapeBaselines | None:
        try:
            return self._store.load()
        except StateError as exc:
            log.warning("scrape_baselines_unreadable", error=str(exc))
            return None

    def _baselines(self, scrape: Scrape, keep: ScrapeBaselines | None) -> ScrapeBaselines:
        now = self._clock.now()
        metrics: dict[str, CounterBaseline] = {}
        for metric, selector in self._selectors.items():
            current = scrape.select(selector)
            previous = keep.metrics.get(metric) if keep else None
            if keep is None or previous is None or previous.selector != self._texts[metric]:
                metrics[metric] = CounterBaseline(self._texts[metric], current)
                continue
            metrics[metric] = carry_absent(previous, keep.taken_at, current, now)
        return ScrapeBaselines(taken_at=now, metrics=metrics)

    async def prime(self) -> bool:
        """Take the start-up baseline unless one is stored; ``True`` when a baseline exists."""
        if self._load() is not None:
            return True
        scrape = await self._source.scrape()
        self._store.save(self._baselines(scrape, None))
        log.info("scrape_baselines_taken", metrics=list(self._selectors))
        return True

    async def measure(self, window: Window) -> Measurement:
        scrape = await self._source.scrape()
        stored = self._load()
        fresh = self._baselines(scrape, stored)
        if stored is None:
            self._store.save(fresh)
            log.warning("scrape_baselines_missing", window=str(window))
            return Measurement(missing=self.metrics)
        values: dict[str, int | float] = {}
        missing: list[str] = []
        coverage: dict[str, MetricCoverage] = {}
        for metric, selector in self._selectors.items():
            current = scrape.select(selector)
            coverage[metric] = MetricCoverage(
                samples=len(current), expected=len(current), series=len(current), method="scrape"
            )
            previous = stored.metrics.get(metric)
            if not current or previous is None or previous.selector != self._texts[metric]:
                missing.append(metric)
                continue
            increase = window_increase(previous.series, {k: [v] for k, v in current.items()})
            values[metric] = as_report_number(increase)
        return Measurement(
            metrics=values,
            missing=tuple(missing),
            coverage=coverage,
            commit=lambda: self._store.save(fresh),
        )
