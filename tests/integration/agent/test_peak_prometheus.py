"""The storage peak from every raw sample, against a real Prometheus filled by promtool backfill.

Issue 11, defect 3: the peak was ``max_over_time`` of the expression at 15 s steps, so a target
scraped every 10 s that held 80 GB for one sample reported 1 GB.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from agent.adapters.prometheus import PrometheusSource
from agent.errors import ResultTooLargeError
from agent.services.peaks import LOOKBACK_DELTA
from agent.services.providers import PrometheusPeak
from common.schema import MetricCoverage
from common.windows import Window
from tests.support.prometheus import Family, Series, openmetrics_text

pytestmark = pytest.mark.prometheus

T0 = datetime(2023, 1, 10, 6, tzinfo=UTC)
HOUR = timedelta(hours=1)
WINDOW = Window(T0, T0 + HOUR)
GB = 10**9
SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)
# 15 s steps fall at :00, :15, :30 and :45; a sample at :20 is replaced by :30's before a step.
SPIKE_AT = T0 + 20 * MINUTE + 20 * SECOND


def _every(
    seconds: int, phase: int, value: int, overrides: dict[datetime, int]
) -> list[tuple[float, float]]:
    """Scrapes every ``seconds`` from ten minutes before the window to its end."""
    samples = []
    moment = T0 - 10 * MINUTE + phase * SECOND
    while moment <= T0 + HOUR:
        samples.append((moment.timestamp(), float(overrides.get(moment, value))))
        moment += seconds * SECOND
    return samples


def _families() -> list[Family]:
    spike = Series({"persistentvolumeclaim": "data"}, _every(10, 0, GB, {SPIKE_AT: 80 * GB}))
    # Each claim peaks alone at 10 GB; together they hold 6 + 7 = 13 GB, never 10 + 10.
    a_alone, b_alone = T0 + 10 * MINUTE, T0 + 20 * MINUTE + 15 * SECOND
    a_together, b_together = T0 + 40 * MINUTE, T0 + 40 * MINUTE + 15 * SECOND
    claim_a = _every(30, 0, GB, {a_alone: 10 * GB, a_together: 6 * GB})
    claim_b = _every(30, 15, GB, {b_alone: 10 * GB, b_together: 7 * GB})
    return [
        Family("spike_used_bytes", "gauge", [spike]),
        Family(
            "phased_used_bytes",
            "gauge",
            [Series({"claim": "a"}, claim_a), Series({"claim": "b"}, claim_b)],
        ),
    ]


@pytest.fixture(scope="module")
def prometheus_url(prometheus_factory) -> str:
    return prometheus_factory(openmetrics_text(_families()))


@pytest.fixture
def source(prometheus_url: str):
    prometheus = PrometheusSource(prometheus_url, retries=0)
    yield prometheus
    prometheus.close()


async def test_a_sample_between_two_grid_steps_is_the_peak(source):
    provider = PrometheusPeak("storage_gb", source, "sum(spike_used_bytes)")

    measured = await provider.measure(WINDOW)
    grid = await source.peak("sum(spike_used_bytes)", WINDOW)

    assert measured.metrics == {"storage_gb": 80.0}
    assert measured.coverage == {
        "storage_gb": MetricCoverage(samples=360, expected=360, series=1, method="raw")
    }
    assert grid.value == Decimal(GB)  # what the old grid query billed


async def test_a_sum_peaks_at_its_highest_held_sum_not_the_sum_of_the_maxima(source):
    provider = PrometheusPeak("storage_gb", source, 'sum(phased_used_bytes{claim=~"a|b"})')

    measured = await provider.measure(WINDOW)

    assert measured.metrics == {"storage_gb": 13.0}
    assert measured.coverage["storage_gb"] == MetricCoverage(
        samples=240, expected=240, series=2, method="raw"
    )


async def test_a_window_without_samples_is_unmeasured(source):
    provider = PrometheusPeak("storage_gb", source, "sum(spike_used_bytes)")

    measured = await provider.measure(Window(T0 - 3 * HOUR, T0 - 2 * HOUR))

    assert measured.metrics == {}
    assert measured.unmeasured == ("storage_gb",)
    assert measured.coverage["storage_gb"] == MetricCoverage(
        samples=0, expected=240, series=0, method="raw"
    )


async def test_an_expression_that_does_not_decompose_is_read_on_the_grid(source):
    provider = PrometheusPeak("storage_gb", source, "sum(spike_used_bytes) * 1")

    measured = await provider.measure(WINDOW)

    assert measured.metrics == {"storage_gb": 1.0}  # the grid steps over the spike
    assert measured.coverage["storage_gb"] == MetricCoverage(
        samples=240, expected=240, series=1, method="grid"
    )


async def test_more_samples_than_the_cap_are_read_in_parts(prometheus_url, source):
    capped = PrometheusSource(prometheus_url, retries=0, max_samples=100)
    try:
        parts = await capped.gauge_samples("phased_used_bytes", WINDOW, LOOKBACK_DELTA)
    finally:
        capped.close()
    whole = await source.gauge_samples("phased_used_bytes", WINDOW, LOOKBACK_DELTA)

    assert parts == whole
    assert sum(len(samples) for samples in whole.series.values()) == 2 * 130


async def test_more_series_than_the_cap_is_an_error(prometheus_url):
    capped = PrometheusSource(prometheus_url, retries=0, max_series=1)
    try:
        with pytest.raises(ResultTooLargeError, match="AGENT_QUERY_MAX_SERIES"):
            await capped.gauge_samples("phased_used_bytes", WINDOW, LOOKBACK_DELTA)
    finally:
        capped.close()
