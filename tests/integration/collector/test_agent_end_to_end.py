"""The real agent against the real collector: what the collector bills equals the ground truth."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from agent.cli.wiring import build_runtime
from agent.settings import load_settings
from common.clock import ManualClock
from common.schema import UsageReport
from demo.simulator import Simulator
from tests.support.collector import RunningCollector, count_rows

AGENT_VARIABLES = (
    "CUSTOMER_ID",
    "INSTANCE_ID",
    "BILLING_API_URL",
    "COLLECTION_INTERVAL",
    "ENABLE_USAGE_REPORTING",
)


class WorldClock(ManualClock):
    """Manual time in which the customer's traffic happens while the agent waits."""

    def __init__(self, start: datetime, on_sleep: Callable[[], None]) -> None:
        super().__init__(start)
        self._on_sleep = on_sleep

    async def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._on_sleep()
        await super().sleep(seconds)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("AGENT_") or name.upper() in AGENT_VARIABLES:
            monkeypatch.delenv(name)


async def test_agent_reports_reach_the_collector_once_and_bill_exactly(
    collector: RunningCollector, tmp_path: Path
) -> None:
    traffic = [120, 0, 3_456, 7, 1, 999, 42, 5]
    sent: list[int] = []
    quiet_until: list[datetime] = []
    start = (datetime.now(UTC) - timedelta(hours=2)).replace(second=50, microsecond=0)
    with Simulator(devices=12, active=5, page_size=5) as simulator:

        def next_traffic() -> None:
            if len(sent) == 3:
                simulator.reset_counter()
            if len(sent) < len(traffic):
                simulator.add_messages(traffic[len(sent)])
                sent.append(traffic[len(sent)])
            elif not quiet_until:
                quiet_until.append(clock.now() + timedelta(minutes=3))
            elif clock.now() >= quiet_until[0]:
                runtime.loop.stop()

        clock = WorldClock(start, next_traffic)
        settings = load_settings(
            customer_id="cust_e2e",
            instance_id="cluster-1",
            collector_url=collector.url,
            interval="1m",
            query_offset="5s",
            device_api_url=f"{simulator.url}/api/devices",
            metrics_url=f"{simulator.url}/metrics",
            state_dir=tmp_path,
            collector_token=collector.ingest_headers("cust_e2e")["authorization"].split()[1],
        )
        runtime = await build_runtime(settings, clock)
        simulator.add_messages(10_000)
        try:
            await asyncio.wait_for(runtime.loop.run(), timeout=60)
        finally:
            await runtime.aclose()

    viewer = collector.operator_headers("viewer")
    async with httpx.AsyncClient(base_url=collector.url, headers=viewer) as http:
        history = (await http.get("/api/usage/cust_e2e", params={"limit": 1000})).json()
        totals = (
            await http.get(
                "/api/usage/cust_e2e/totals",
                params={
                    "since": (start - timedelta(hours=1)).isoformat(),
                    "until": datetime.now(UTC).isoformat(),
                },
            )
        ).json()
    reports = history["reports"]
    billed = sum(r["metrics"].get("mqtt_messages", 0) for r in reports)
    assert billed == simulator.truth_since_first_scrape() == sum(traffic)
    assert all(r["metrics"]["devices"] == 5 for r in reports)
    assert len({r["window_end"] for r in reports}) == len(reports)
    by_name = {t["name"]: Decimal(t["value"]) for t in totals["totals"]}
    assert by_name["mqtt_messages"] == sum(traffic)
    assert by_name["devices"] == 5


def test_a_resent_window_is_stored_once(collector: RunningCollector) -> None:
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    report = UsageReport(
        customer_id="c",
        instance_id="i",
        window_start=end - timedelta(hours=1),
        window_end=end,
        metrics={"mqtt_messages": 5},
    )
    codes = [
        httpx.post(
            f"{collector.url}/api/usage/report",
            content=report.to_json(),
            headers={"content-type": "application/json", **collector.ingest_headers("c")},
        ).status_code
        for _ in range(3)
    ]
    assert codes == [201, 200, 200]
    assert count_rows(collector.settings.database_url.get_secret_value()) == 1
