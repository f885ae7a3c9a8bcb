"""Raw counter samples and gauge peaks read from Prometheus through prometheus-api-client.

Counters are never read through ``increase()`` or ``rate()``: those extrapolate to the window
edges. Instead every raw sample of the window is fetched with a range selector, and each series'
baseline is its last sample at or before the window start. Prometheus 2.x range selectors are
closed on both ends and 3.x ones are left-open, so samples are partitioned here, not by the query:
a sample at exactly ``window.start`` belongs to the previous window. Queries are evaluated at the
same whole milliseconds the samples are partitioned by, so two windows that meet at any moment
(a billing-period boundary at 12:34:56, say) split the samples, and the increases, exactly.

Series are identified by their labels without ``__name__`` (``last_over_time`` drops it), so a
selector should match one metric name, or its series must differ in other labels; a clash is a
source error. The baseline query looks back ``baseline_lookback``, or to ``since`` when the caller
asks for more: the agent passes the end of the last window it measured, so together with its own
persisted values (``services.counter_memory``) no series it has seen is mistaken for a new one.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from agent.adapters.series import SeriesKey, series_key
from agent.errors import NoDataError, ResultTooLargeError, SourceError
from common.windows import EPOCH, Window, as_utc

SOURCE = "prometheus"


@dataclass(frozen=True)
class CounterWindow:
    """The raw samples of every counter series in ``(start, end]`` and their baselines."""

    baselines: dict[SeriesKey, Decimal] = field(default_factory=dict)
    samples: dict[SeriesKey, list[Decimal]] = field(default_factory=dict)
    last_seen: dict[SeriesKey, datetime] = field(default_factory=dict)
    """When each series with samples in the window had its last one."""

    @property
    def series_count(self) -> int:
        return len(self.baselines.keys() | self.samples.keys())


# A range this short that still holds more samples than the cap is not split further.
MIN_SPLIT_MS = 1000


@dataclass(frozen=True)
class GaugeSamples:
    """Every raw sample of each series a selector matched in ``(start - lookback, end]``.

    Gauge peaks are read like counters, sample by sample, and summed by ``services.peaks``: a
    grid of steps (``PrometheusSource.peak``) can step over a short-lived sample. Series are
    keyed by all their labels, ``__name__`` included; samples are ``(epoch milliseconds,
    value)``, oldest first. The window's ends are in the same whole milliseconds, and
    ``scrape_interval_ms`` is the configured scrape interval.
    """

    window_start_ms: int
    window_end_ms: int
    scrape_interval_ms: int
    series: dict[SeriesKey, list[tuple[int, Decimal]]] = field(default_factory=dict)


@dataclass(frozen=True)
class GridPeak:
    """The maximum of a one-series expression evaluated at scrape-interval steps in a window.

    ``value`` is ``None`` when no step had a value; ``points`` steps had one, of ``expected``.
    """

    value: Decimal | None
    points: int
    expected: int
    series: int


def labels_key(labels: dict[str, Any]) -> SeriesKey:
    """Every label, ``__name__`` included: gauges of different names stay apart."""
    return tuple(sorted((str(k), str(v)) for k, v in labels.items()))


def _seconds(value: timedelta) -> int:
    return max(1, math.ceil(value.total_seconds()))


def _millis(timestamp: Any) -> int:
    """Prometheus timestamps are whole milliseconds; compare them as integers, not floats."""
    return int((Decimal(str(timestamp)) * 1000).to_integral_value())


def _epoch_millis(moment: datetime) -> int:
    return (as_utc(moment) - EPOCH) // timedelta(milliseconds=1)


def _number(raw: Any) -> Decimal:
    try:
        value = Decimal(str(raw))
    except InvalidOperation as exc:
        raise SourceError(SOURCE, f"not a number in the response: {raw!r}") from exc
    if not value.is_finite():
        raise SourceError(SOURCE, f"non-finite sample value {raw!r}")
    return value


class PrometheusSource:
    """Queries one Prometheus server; every call is bounded by a series and a sample cap."""

    def __init__(
        self,
        url: str,
        *,
        timeout: timedelta = timedelta(seconds=10),
        baseline_lookback: timedelta = timedelta(days=1),
        scrape_interval: timedelta = timedelta(seconds=15),
        max_series: int = 10_000,
        max_samples: int = 2_000_000,
        session: requests.Session | None = None,
        retries: int = 1,
    ) -> None:
        retry = Retry(total=retries, backoff_factor=0.2, status_forcelist=[502, 503, 504])
        kwargs: dict[str, Any] = {"retry": retry, "timeout": max(1, _seconds(timeout))}
        if session is not None:
            kwargs["session"] = session
        self._client = PrometheusConnect(url=url.rstrip("/"), **kwargs)
        self._lookback = baseline_lookback
        self._step = scrape_interval
        self._max_series = max_series
        self._max_samples = max_samples

    def close(self) -> None:
        self._client.close()

    def _query(self, query: str, at: float) -> list[dict[str, Any]]:
        try:
            result = self._client.custom_query(query, params={"time": f"{at:.3f}"})
        except PrometheusApiClientException as exc:
            raise SourceError(SOURCE, f"query {query!r} failed: {exc}") from exc
        except requests.RequestException as exc:
            raise SourceError(SOURCE, f"cannot reach Prometheus: {exc}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise SourceError(SOURCE, f"unexpected response to {query!r}: {exc}") from exc
        if not isinstance(result, list):
            raise SourceError(SOURCE, f"unexpected result type for {query!r}")
        if len(result) > self._max_series:
            raise ResultTooLargeError(
                SOURCE,
                f"{query!r} returned {len(result)} series, more than the cap of "
                f"{self._max_series} (AGENT_QUERY_MAX_SERIES); narrow the selector",
            )
        return result

    def _counter_window(
        self, selector: str, window: Window, since: datetime | None
    ) -> CounterWindow:
        start_ms, end_ms = _epoch_millis(window.start), _epoch_millis(window.end)
        lookback = self._lookback
        if since is not None and since < window.start:
            lookback = max(lookback, window.start - since)
        inside: dict[SeriesKey, list[tuple[int, Decimal]]] = {}
        self._read_range(selector, start_ms, end_ms, inside, keyed=series_key)
        raw_baselines = self._query(
            f"last_over_time({selector}[{_seconds(lookback)}s])", start_ms / 1000
        )
        result = CounterWindow()
        for key, samples in inside.items():
            if samples:
                result.samples[key] = [value for _, value in samples]
                result.last_seen[key] = EPOCH + timedelta(milliseconds=samples[-1][0])
        try:
            for series in raw_baselines:
                result.baselines[series_key(series["metric"])] = _number(series["value"][1])
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise SourceError(SOURCE, f"unexpected series shape for {selector!r}: {exc}") from exc
        if not result.samples and not result.baselines:
            raise NoDataError(SOURCE, f"no series match {selector!r}")
        return result

    def _read_range(
        self,
        selector: str,
        after_ms: int,
        until_ms: int,
        into: dict[SeriesKey, list[tuple[int, Decimal]]],
        *,
        keyed: Callable[[dict[str, Any]], SeriesKey],
    ) -> None:
        """Add the raw samples in ``(after, until]`` to ``into``, keyed by ``keyed(labels)``.

        A range holding more samples than the cap is split in halves by time and each half read
        again, so a long window or a busy selector is read in parts instead of dropped.
        """
        result = self._query(f"{selector}[{until_ms - after_ms}ms]", until_ms / 1000)
        try:
            total = sum(len(series["values"]) for series in result)
            if total > self._max_samples:
                if until_ms - after_ms < 2 * MIN_SPLIT_MS:
                    raise ResultTooLargeError(
                        SOURCE,
                        f"{selector!r} returned {total} samples in {until_ms - after_ms} ms, more "
                        f"than the cap of {self._max_samples} (AGENT_QUERY_MAX_SAMPLES)",
                    )
                middle = after_ms + (until_ms - after_ms) // 2
                self._read_range(selector, after_ms, middle, into, keyed=keyed)
                self._read_range(selector, middle, until_ms, into, keyed=keyed)
                return
            seen: set[SeriesKey] = set()
            for series in result:
                key = keyed(series["metric"])
                if key in seen:
                    raise SourceError(SOURCE, f"{selector!r} matches two series labelled {key}")
                seen.add(key)
                samples = into.setdefault(key, [])
                for timestamp, value in series["values"]:
                    at = _millis(timestamp)
                    if after_ms < at <= until_ms:
                        samples.append((at, _number(value)))
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise SourceError(SOURCE, f"unexpected series shape for {selector!r}: {exc}") from exc
        if len(into) > self._max_series:
            raise ResultTooLargeError(
                SOURCE,
                f"{selector!r} matched {len(into)} series, more than the cap of "
                f"{self._max_series} (AGENT_QUERY_MAX_SERIES); narrow the selector",
            )

    def _gauge_samples(self, selector: str, window: Window, lookback: timedelta) -> GaugeSamples:
        start_ms, end_ms = _epoch_millis(window.start), _epoch_millis(window.end)
        lookback_ms = max(0, lookback // timedelta(milliseconds=1))
        series: dict[SeriesKey, list[Any]] = {}
        self._read_range(selector, start_ms - lookback_ms, end_ms, series, keyed=labels_key)
        return GaugeSamples(
            window_start_ms=start_ms,
            window_end_ms=end_ms,
            scrape_interval_ms=max(1, self._step // timedelta(milliseconds=1)),
            series={key: samples for key, samples in series.items() if samples},
        )

    def _peak(self, expression: str, window: Window) -> GridPeak:
        start_ms, end_ms = _epoch_millis(window.start), _epoch_millis(window.end)
        step = _seconds(self._step)
        # The subquery's points themselves, not max_over_time: the maximum and how many steps
        # had a value come from one query. One millisecond short, so a step at the window's start
        # (the previous window's) is left out by Prometheus 2.x as by 3.x.
        query = f"({expression})[{max(1, end_ms - start_ms - 1)}ms:{step}s]"
        result = self._query(query, end_ms / 1000)
        expected = (end_ms - start_ms) // (step * 1000)
        if not result:
            return GridPeak(value=None, points=0, expected=expected, series=0)
        if len(result) > 1:
            raise SourceError(
                SOURCE, f"{expression!r} returned {len(result)} series; wrap it in sum(...)"
            )
        try:
            values = [_number(value) for _, value in result[0]["values"]]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise SourceError(SOURCE, f"unexpected result shape for {expression!r}") from exc
        if len(values) > self._max_samples:
            raise ResultTooLargeError(
                SOURCE,
                f"{expression!r} returned more than {self._max_samples} points "
                "(AGENT_QUERY_MAX_SAMPLES)",
            )
        return GridPeak(
            value=max(values, default=None), points=len(values), expected=expected, series=1
        )

    async def counter_window(
        self, selector: str, window: Window, *, since: datetime | None = None
    ) -> CounterWindow:
        """Each matched series' raw samples in ``(start, end]``, and its baseline.

        A baseline is the last sample at or before the start, looked for as far back as the
        baseline lookback, or as ``since`` when that is earlier.
        """
        return await asyncio.to_thread(self._counter_window, selector, window, since)

    async def gauge_samples(
        self, selector: str, window: Window, lookback: timedelta
    ) -> GaugeSamples:
        """Every raw sample of each matched series in ``(start - lookback, end]``.

        One range query evaluated at the window's end; when it returns more samples than the
        cap, the range is read in halves instead, and each series' samples are joined in order.
        """
        return await asyncio.to_thread(self._gauge_samples, selector, window, lookback)

    async def peak(self, expression: str, window: Window) -> GridPeak:
        """The highest value of a one-series expression in the window, sampled every scrape."""
        return await asyncio.to_thread(self._peak, expression, window)
