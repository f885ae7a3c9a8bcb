"""Device API paging, counting by status, and bad answers as source errors."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from agent.adapters.device_api import DeviceApiSource, DeviceCounts
from agent.errors import SourceError
from agent.services.collect import ReportCollector
from agent.services.providers import DeviceCount
from common.windows import Window
from demo.simulator import Simulator

URL = "http://devices.test/api/devices"
WINDOW = Window(datetime(2024, 3, 1, 10, tzinfo=UTC), datetime(2024, 3, 1, 11, tzinfo=UTC))


async def test_counts_every_page_of_the_simulator():
    with Simulator(devices=23, active=9, page_size=5) as simulator:
        async with httpx.AsyncClient(timeout=5) as client:
            source = DeviceApiSource(client, f"{simulator.url}/api/devices")

            counts = await source.count()

    assert counts == DeviceCounts(total=23, active=9)


async def test_page_cap_is_a_source_error():
    with Simulator(devices=23, active=9, page_size=5) as simulator:
        async with httpx.AsyncClient(timeout=5) as client:
            source = DeviceApiSource(client, f"{simulator.url}/api/devices", page_limit=4)

            with pytest.raises(SourceError, match="more than 4 pages"):
                await source.count()


async def test_plain_list_and_case_insensitive_statuses(httpx_mock):
    httpx_mock.add_response(
        url=URL,
        json=[{"status": "ACTIVE"}, {"status": "Online"}, {"status": "offline"}, {"status": "x"}],
    )
    async with httpx.AsyncClient() as client:
        counts = await DeviceApiSource(client, URL).count()

    assert counts == DeviceCounts(total=4, active=2)


async def test_next_links_relative_and_absolute_and_other_list_keys(httpx_mock):
    httpx_mock.add_response(
        url=URL, json={"items": [{"status": "active"}], "next": "/api/devices?page=2"}
    )
    httpx_mock.add_response(
        url=f"{URL}?page=2",
        json={"data": [{"status": "active"}], "next": "http://other.test/more"},
    )
    httpx_mock.add_response(url="http://other.test/more", json={"devices": [{"status": "down"}]})
    async with httpx.AsyncClient() as client:
        counts = await DeviceApiSource(client, URL, token="tok").count()

    assert counts == DeviceCounts(total=3, active=2)
    assert all(r.headers["Authorization"] == "Bearer tok" for r in httpx_mock.get_requests())


async def test_cursor_is_sent_back_as_a_query_parameter(httpx_mock):
    httpx_mock.add_response(url=f"{URL}?tenant=t", json={"devices": [], "next_cursor": "abc"})
    httpx_mock.add_response(
        url=f"{URL}?tenant=t&cursor=abc",
        json={"devices": [{"status": "active"}], "next_cursor": None},
    )
    async with httpx.AsyncClient() as client:
        counts = await DeviceApiSource(client, f"{URL}?tenant=t").count()

    assert counts == DeviceCounts(total=1, active=1)


@pytest.mark.parametrize(
    "body",
    [
        {"unexpected": []},
        {"devices": "many"},
        "hello",
        [{"id": 1}],
        [{"status": None}],
        ["device-1"],
        {"devices": [], "next_cursor": {"x": 1}},
    ],
    ids=[
        "no-list",
        "list-not-a-list",
        "string",
        "no-status",
        "null-status",
        "not-object",
        "cursor",
    ],
)
async def test_unexpected_shapes_are_source_errors(httpx_mock, body):
    httpx_mock.add_response(url=URL, json=body)
    async with httpx.AsyncClient() as client:
        with pytest.raises(SourceError):
            await DeviceApiSource(client, URL).count()


async def test_garbage_and_http_errors_are_source_errors(httpx_mock):
    httpx_mock.add_response(url=URL, content=b"<html>oops</html>")
    httpx_mock.add_response(url=URL, status_code=503)
    async with httpx.AsyncClient() as client:
        source = DeviceApiSource(client, URL)
        with pytest.raises(SourceError, match="JSON"):
            await source.count()
        with pytest.raises(SourceError, match="503"):
            await source.count()


async def test_paging_that_loops_is_a_source_error(httpx_mock):
    httpx_mock.add_response(url=URL, json={"devices": [], "next": URL}, is_reusable=True)
    async with httpx.AsyncClient() as client:
        with pytest.raises(SourceError, match="loops"):
            await DeviceApiSource(client, URL).count()


async def test_timeout_gives_a_partial_report_without_devices(httpx_mock):
    httpx_mock.add_exception(httpx.ReadTimeout("slow"), url=URL)
    async with httpx.AsyncClient() as client:
        collector = ReportCollector(
            customer_id="c",
            instance_id="i",
            providers=[DeviceCount(DeviceApiSource(client, URL))],
            agent_version="test",
        )
        collected = await collector.collect(WINDOW)

    report = collected.report
    assert report.partial
    assert report.missing == ["devices"]
    assert "devices" not in report.metrics
    assert report.active_devices is None
    assert report.total_devices is None
