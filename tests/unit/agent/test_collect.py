"""One report per window: every configured source, and failed sources missing, never zero."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import agent
from agent.adapters.device_api import DeviceCounts
from agent.adapters.prometheus import PrometheusSource
from agent.errors import SourceError
from agent.services.collect import ReportCollector
from agent.services.providers import DeviceCount, PrometheusCounter, PrometheusPeak, bytes_to_gb
from agent.services.sources import Measurement
from common.schema import derive_report_id
from common.windows import Window
from tests.support.binaries import free_port

WINDOW = Window(datetime(2024, 3, 1, 10, tzinfo=UTC), datetime(2024, 3, 1, 11, tzinfo=UTC))


class Devices:
    def __init__(self, counts: DeviceCounts | None) -> None:
        self.counts = counts

    async def count(self) -> DeviceCounts:
        if self.counts is None:
            raise SourceError("device_api", "down")
        return self.counts


class Broken:
    """A provider with a bug: it must not take the other metrics down with it."""

    metrics = ("api_requests",)
    keeps_history = False

    async def measure(self, window):
        raise ZeroDivisionError("bug")


def collector(*providers) -> ReportCollector:
    return ReportCollector(
        customer_id="cust", instance_id="inst", providers=providers, agent_version=agent.__version__
    )


async def test_a_down_prometheus_leaves_its_metrics_missing_and_never_zero():
    prometheus = PrometheusSource(f"http://127.0.0.1:{free_port()}", retries=0)
    try:
        collected = await collector(
            DeviceCount(Devices(DeviceCounts(total=10, active=7))),
            PrometheusCounter("mqtt_messages", prometheus, "mqtt_messages_received_total"),
            PrometheusPeak("storage_gb", prometheus, "sum(kubelet_volume_stats_used_bytes)"),
            Broken(),
        ).collect(WINDOW)
    finally:
        prometheus.close()

    report = collected.report
    assert report.metrics == {"devices": 7}
    assert report.active_devices == 7
    assert report.total_devices == 10
    assert report.partial is True
    assert sorted(report.missing) == ["api_requests", "mqtt_messages", "storage_gb"]
    assert sorted(collected.awaiting_history) == ["mqtt_messages", "storage_gb"]
    assert report.agent_version == agent.__version__


async def test_a_complete_report_has_the_deterministic_id_and_is_not_partial():
    collected = await collector(DeviceCount(Devices(DeviceCounts(total=3, active=0)))).collect(
        WINDOW
    )

    report = collected.report
    assert report.metrics == {"devices": 0}  # measured: zero active devices
    assert report.partial is False
    assert report.missing == []
    assert report.report_id == derive_report_id("cust", "inst", WINDOW.start, WINDOW.end)
    assert (report.window_start, report.window_end) == (WINDOW.start, WINDOW.end)


async def test_device_api_down_leaves_device_fields_unset():
    report = (await collector(DeviceCount(Devices(None))).collect(WINDOW)).report

    assert report.metrics == {}
    assert report.missing == ["devices"]
    assert report.active_devices is None


def test_bytes_become_gigabytes_of_ten_to_the_ninth():
    assert bytes_to_gb(Decimal(12_345_678_901)) == 12.345678901
    assert bytes_to_gb(Decimal(10**9)) == 1.0
    assert bytes_to_gb(Decimal("123456789012345678")) == 123456789.012346
    assert bytes_to_gb(Decimal(0)) == 0.0


class Huge:
    metrics = ("mqtt_messages",)
    keeps_history = False

    async def measure(self, window):
        return Measurement(metrics={"mqtt_messages": 10**13})


async def test_a_value_the_schema_refuses_is_missing_and_the_rest_is_sent():
    report = (
        await collector(Huge(), DeviceCount(Devices(DeviceCounts(total=1, active=1)))).collect(
            WINDOW
        )
    ).report

    assert report.metrics == {"devices": 1}
    assert report.missing == ["mqtt_messages"]
