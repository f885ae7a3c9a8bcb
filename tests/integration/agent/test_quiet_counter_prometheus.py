"""A counter that goes quiet for more than a day, against a real Prometheus (promtool backfill).

The broker's target is not scraped for 26 hours but keeps counting. Prometheus' baseline lookback
is one day, so the first window after the gap used to find no baseline and bill the counter from
0: every message since the broker started. The agent's own state remembers the series' last value.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from common.clock import ManualClock
from common.windows import Window
from tests.integration.agent.real_collector import stored_reports
from tests.integration.agent.test_catch_up_prometheus import (
    clean_environment,
    run_agent_once,
)
from tests.support.prometheus import Family, Series, openmetrics_text

__all__ = ["clean_environment"]

pytestmark = pytest.mark.prometheus

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
T0 = (datetime.now(UTC) - timedelta(days=4)).replace(minute=0, second=0, microsecond=0)
GAP_END = T0 + 27 * HOUR  # no sample from T0 + 1h until just after this


def _broker() -> tuple[list[tuple[float, float]], list[tuple[datetime, int]]]:
    value = 1_000_000  # counted since the broker started, long before the history
    samples: list[tuple[float, float]] = []
    truth: list[tuple[datetime, int]] = []
    moment = T0 - HOUR
    while moment <= T0 + HOUR:
        value += 4
        samples.append((moment.timestamp(), float(value)))
        truth.append((moment, 4))
        moment += MINUTE
    # Back after 26 hours: the first sample carries what was counted while nobody scraped.
    for minute, messages in ((1, 300), (2, 20), (3, 19)):
        moment = GAP_END + minute * MINUTE
        value += messages
        samples.append((moment.timestamp(), float(value)))
        truth.append((moment, messages))
    return samples, truth


SAMPLES, TRUTH = _broker()


def truth(window: Window) -> int:
    return sum(n for t, n in TRUTH if window.start < t <= window.end)


@pytest.fixture(scope="module")
def prometheus_url(prometheus_factory) -> str:
    family = Family("mqtt_messages_received", "counter", [Series({"broker": "a"}, SAMPLES)])
    return prometheus_factory(openmetrics_text([family]))


async def test_a_counter_quiet_for_more_than_a_day_is_not_billed_from_zero(
    prometheus_url, real_collector, tmp_path
):
    clock = ManualClock(T0 + HOUR + MINUTE)
    await run_agent_once(prometheus_url, real_collector.url, tmp_path, clock, customer_id="quiet")
    clock.set(GAP_END + HOUR + MINUTE)

    await run_agent_once(prometheus_url, real_collector.url, tmp_path, clock, customer_id="quiet")

    reports = stored_reports(real_collector, "quiet")
    windows = [Window(T0 + i * HOUR, T0 + (i + 1) * HOUR) for i in range(28)]
    assert [datetime.fromisoformat(r["window_start"]) for r in reports] == [
        w.start for w in windows
    ]
    assert reports[-1]["metrics"]["mqtt_messages"] == 339
    # The windows nobody scraped were not measured: no value, never a measured 0.
    scraped = [
        any(w.start.timestamp() < t <= w.end.timestamp() for t, _ in SAMPLES) for w in windows
    ]
    assert [r["metrics"].get("mqtt_messages") for r in reports] == [
        truth(w) if seen else None for w, seen in zip(windows, scraped, strict=True)
    ]
    assert [r["unmeasured"] for r in reports] == [
        [] if seen else ["mqtt_messages"] for seen in scraped
    ]
    assert all(not r["partial"] for r in reports)
