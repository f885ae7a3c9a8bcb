"""The wired agent on a manual clock against the simulator and a loopback collector stub."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta

import pytest

from agent.cli.wiring import build_runtime
from agent.settings import load_settings
from common.clock import ManualClock
from demo.simulator import Simulator
from tests.integration.agent.collector_stub import CollectorStub
from tests.integration.agent.test_cli import SEED_NAMES


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("AGENT_") or name.upper() in SEED_NAMES:
            monkeypatch.delenv(name)
    monkeypatch.delenv("COLLECTION_INTERVAL", raising=False)


async def test_every_window_is_billed_and_the_total_equals_the_ground_truth(tmp_path):
    windows = 6
    per_window = [13, 0, 250, 7, 1, 99]
    stub = CollectorStub()
    clock = ManualClock(datetime(2024, 3, 1, 9, 59, 50, tzinfo=UTC))
    aio_loop = asyncio.get_running_loop()
    with Simulator(devices=9, active=4, page_size=2) as simulator:
        settings = load_settings(
            customer_id="cust",
            instance_id="inst",
            collector_url=stub.url,
            interval="1m",
            query_offset="5s",
            device_api_url=f"{simulator.url}/api/devices",
            metrics_url=f"{simulator.url}/metrics",
            state_dir=tmp_path,
        )
        runtime = await build_runtime(settings, clock)

        def on_report() -> None:
            # Runs in the stub's thread between two scrapes.
            done = len(stub.received)
            if done == 4:
                simulator.reset_counter()  # right after a scrape, and the drop is visible
            if done < windows:
                simulator.add_messages(per_window[done - 1])
            else:
                aio_loop.call_soon_threadsafe(runtime.loop.stop)

        stub.on_report = on_report
        simulator.add_messages(500)  # before start-up: never billed
        try:
            await asyncio.wait_for(runtime.loop.run(), timeout=60)
        finally:
            await runtime.aclose()
            stub.close()

    reports = [body for _, body in stub.received]
    starts = [datetime.fromisoformat(r["window_start"]) for r in reports]
    assert starts == [starts[0] + timedelta(minutes=i) for i in range(windows)]
    assert all(r["metrics"]["devices"] == 4 for r in reports)
    billed = [r["metrics"]["mqtt_messages"] for r in reports]
    assert sum(billed) == simulator.truth_since_first_scrape() == sum(per_window[: windows - 1])
    assert billed == [0, *per_window[: windows - 1]]
