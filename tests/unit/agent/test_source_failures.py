"""A source answering garbage or timing out: the window is retried, or sent partial, never zero."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client import CollectorRegistry

from agent.cli.wiring import build_runtime
from agent.settings import load_settings
from common.clock import ManualClock

START = datetime(2024, 3, 1, 10, 0, 40, tzinfo=UTC)


@pytest.fixture(autouse=True)
def no_kube(monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert not any(k.startswith("AGENT_") for k in os.environ)


class World:
    """The device API and the collector behind one mock transport."""

    def __init__(self, device_answer) -> None:
        self.device_answer = device_answer
        self.reports: list[dict] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/api/devices"):
            return self.device_answer(request)
        self.reports.append(json.loads(request.content))
        return httpx.Response(201, json={"message": "ok"})


def garbage(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, text="<html>maintenance</html>")


def wrong_shape(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"devices": "lots"})


def timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("slow", request=request)


async def run_once(world: World, tmp_path, **overrides):
    settings = load_settings(
        customer_id="c",
        instance_id="i",
        collector_url="http://collector.test",
        device_api_url="http://devices.test/api/devices",
        interval="15m",
        state_dir=tmp_path,
        **overrides,
    )
    registry = CollectorRegistry()
    runtime = await build_runtime(
        settings,
        ManualClock(START),
        transport=httpx.MockTransport(world.handle),
        registry=registry,
    )
    try:
        accepted = await runtime.loop.run_once(attempts=1)
    finally:
        await runtime.aclose()
    return accepted, registry


@pytest.mark.parametrize("answer", [garbage, wrong_shape, timeout])
async def test_a_failing_source_defers_the_window_and_counts_the_error(tmp_path, answer):
    world = World(answer)

    outcome, registry = await run_once(world, tmp_path)

    assert outcome.accepted is False  # run --once exits 1: nothing was sent
    assert "devices could not be measured" in outcome.reason
    assert "device_api" in outcome.reason  # the source's own error, to fix it
    assert "AGENT_PARTIAL_AFTER" in outcome.reason
    assert world.reports == []  # retried next cycle, not sent as zero
    assert registry.get_sample_value("usage_agent_source_errors_total", {"source": "device_api"})
    assert registry.get_sample_value("usage_agent_windows_deferred_total") == 1


@pytest.mark.parametrize("answer", [garbage, wrong_shape, timeout])
async def test_after_partial_after_the_window_goes_partial_without_the_metric(tmp_path, answer):
    world = World(answer)

    await run_once(world, tmp_path, partial_after="0s")

    (report,) = world.reports
    assert report["partial"] is True
    assert report["missing"] == ["devices"]
    assert "devices" not in report["metrics"]
    assert report["active_devices"] is None


async def test_the_retried_window_is_complete_once_the_source_recovers(tmp_path):
    world = World(timeout)
    await run_once(world, tmp_path)
    world.device_answer = lambda request: httpx.Response(
        200, json={"devices": [{"id": "d1", "status": "online"}], "next_cursor": None}
    )

    await run_once(world, tmp_path)

    (report,) = world.reports
    assert report["metrics"] == {"devices": 1}
    assert report["partial"] is False
    assert datetime.fromisoformat(report["window_end"]) == START.replace(minute=0, second=0)
    assert timedelta(minutes=15) == datetime.fromisoformat(
        report["window_end"]
    ) - datetime.fromisoformat(report["window_start"])
