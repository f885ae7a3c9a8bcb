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
        span = _seconds(timedelta(milliseconds=end_ms - start_ms))
        lookback = self._lookback
        if since is not None and since < window.start:
            lookback = max(lookback, window.start - since)
        raw_samples = self._query(f"{selector}[{span}s]", end_ms / 1000)
        raw_baselines = self._query(
            f"last_over_time({selector}[{_seconds(lookback)}s])", start_ms / 1000
        )
        result = CounterWindow()
        total = 0
        seen: set[SeriesKey] = set()
        try:
            for series in raw_samples:
                key = series_key(series["metric"])
                if key in seen:
                    raise SourceError(SOURCE, f"{selector!r} matches two series labelled {key}")
                seen.add(key)
                values = series["values"]
                total += len(values)
                if total > self._max_samples:
                    raise ResultTooLargeError(
                        SOURCE,
                        f"{selector!r} returned more than {self._max_samples} samples "
                        "(AGENT_QUERY_MAX_SAMPLES)",
                    )
                inside = [(t, _number(v)) for t, v in values if start_ms < _millis(t) <= end_ms]
                if inside:
                    result.samples[key] = [v for _, v in inside]
                    last_ms = _millis(inside[-1][0])
                    result.last_seen[key] = EPOCH + timedelta(milliseconds=last_ms)
            for series in raw_baselines:
                result.baselines[series_key(series["metric"])] = _number(series["value"][1])
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise SourceError(SOURCE, f"unexpected series shape for {selector!r}: {exc}") from exc
        if not result.samples and not result.baselines:
            raise NoDataError(SOURCE, f"no series match {selector!r}")
        return result

    def _peak(self, expression: str, window: Window) -> Decimal:
        query = f"max_over_time(({expression})[{_seconds(window.length)}s:{_seconds(self._step)}s])"
        result = self._query(query, window.end.timestamp())
        if not result:
            raise NoDataError(SOURCE, f"no data for {expression!r} in {window}")
        if len(result) > 1:
            raise SourceError(
                SOURCE, f"{expression!r} returned {len(result)} series; wrap it in sum(...)"
            )
        try:
            return _number(result[0]["value"][1])
        except (KeyError, IndexError, TypeError) as exc:
            raise SourceError(SOURCE, f"unexpected result shape for {expression!r}") from exc

    async def counter_window(
        self, selector: str, window: Window, *, since: datetime | None = None
    ) -> CounterWindow:
        """Each matched series' raw samples in ``(start, end]``, and its baseline.

        A baseline is the last sample at or before the start, looked for as far back as the
        baseline lookback, or as ``since`` when that is earlier.
        """
        return await asyncio.to_thread(self._counter_window, selector, window, since)

    async def peak(self, expression: str, window: Window) -> Decimal:
        """The highest value of a one-series expression in the window, sampled every scrape."""
        return await asyncio.to_thread(self._peak, expression, window)
