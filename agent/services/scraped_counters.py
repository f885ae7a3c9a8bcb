"""Counter deltas from direct /metrics scrapes, against the previous scrape's per-series values.

A scrape is a single point in time, so the delta of a window is measured from the baseline (the
previous accepted scrape) to this scrape. The baseline is taken at agent start-up (``prime``), so
the first window already has a value covering start-up to its end; messages before start-up were
never observed and are not billed. If no baseline exists when a window is measured (start-up
scrape failed, or the state file was lost), this scrape becomes the baseline and the metric is
reported missing for that window, never as zero. New baselines are saved only through the
measurement's ``commit``, i.e. after the report was delivered, so an undelivered window's usage
rolls into the next one instead of being lost.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from agent.adapters.metrics_scrape import Scrape, SeriesSelector
from agent.adapters.scrape_state import CounterBaseline, ScrapeBaselines
from agent.errors import StateError
from agent.services.counters import as_report_number, window_increase
from agent.services.sources import BaselineStore, Measurement, ScrapeSource
from common.clock import Clock
from common.windows import Window

log = structlog.get_logger(__name__)


class ScrapedCounters:
    """Counter metrics (e.g. ``mqtt_messages``) measured by scraping /metrics once per window."""

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
        metrics: dict[str, CounterBaseline] = {}
        for metric, selector in self._selectors.items():
            current = scrape.select(selector)
            previous = keep.metrics.get(metric) if keep else None
            if not current and previous is not None:
                # No series at all looks like an exporter hiccup: keep the old baseline.
                metrics[metric] = previous
            else:
                metrics[metric] = CounterBaseline(self._texts[metric], current)
        return ScrapeBaselines(taken_at=self._clock.now(), metrics=metrics)

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
        for metric, selector in self._selectors.items():
            current = scrape.select(selector)
            previous = stored.metrics.get(metric)
            if not current or previous is None or previous.selector != self._texts[metric]:
                missing.append(metric)
                continue
            increase = window_increase(previous.series, {k: [v] for k, v in current.items()})
            values[metric] = as_report_number(increase)
        return Measurement(
            metrics=values, missing=tuple(missing), commit=lambda: self._store.save(fresh)
        )
