"""SIGKILL at the two dangerous moments, with a real agent process and the real collector.

``AGENT_TEST_CRASH_AT`` (test only) makes the process SIGKILL itself right after a report was
committed to the spool (before any send), or right after the collector answered 2xx (before the
report left the spool). Later runs must deliver every window exactly once.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.simulator import Simulator
from tests.integration.agent.real_collector import stored_reports
from tests.integration.agent.test_cli import SEED_NAMES
from tests.support.collector import RunningCollector


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    with Simulator(devices=6, active=2, page_size=4) as sim:
        yield sim


def agent_env(tmp_path: Path, collector: RunningCollector, sim: Simulator) -> dict[str, str]:
    import os

    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith("AGENT_") and k.upper() not in SEED_NAMES
    }
    clean.pop("COLLECTION_INTERVAL", None)
    return clean | {
        "CUSTOMER_ID": "cust-crash",
        "INSTANCE_ID": "inst-crash",
        "BILLING_API_URL": collector.url,
        "AGENT_INTERVAL": "1s",
        "AGENT_QUERY_OFFSET": "0s",
        "AGENT_DEVICE_API_URL": f"{sim.url}/api/devices",
        "AGENT_METRICS_URL": f"{sim.url}/metrics",
        "AGENT_STATE_DIR": str(tmp_path / "state"),
        "AGENT_RETRY_INITIAL": "10ms",
    }


def run_once(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def events(result: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]


@pytest.mark.parametrize(
    ("point", "stored_at_crash"), [("after_spool", 0), ("after_send", 1)], ids=lambda v: str(v)
)
def test_sigkill_neither_loses_nor_double_counts(
    tmp_path, real_collector, simulator, point, stored_at_crash
):
    env = agent_env(tmp_path, real_collector, simulator)
    simulator.add_messages(500)  # before the first scrape: never billed

    crashed = run_once(env | {"AGENT_TEST_CRASH_AT": point})

    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert any(e.get("event") == "test_crash_point" for e in events(crashed))
    assert len(stored_reports(real_collector, "cust-crash")) == stored_at_crash

    simulator.add_messages(40)
    runs = []
    while len(stored_reports(real_collector, "cust-crash")) < 3 and len(runs) < 20:
        runs.append(run_once(env))
        simulator.add_messages(3)
    final = run_once(env)  # sends what the last scrape measured

    assert all(r.returncode == 0 for r in [*runs, final]), runs[-1].stderr
    reports = stored_reports(real_collector, "cust-crash")
    windows = [(r["window_start"], r["window_end"]) for r in reports]
    assert len(set(windows)) == len(windows)
    assert [s for s, _ in windows[1:]] == [e for _, e in windows[:-1]]
    billed = sum(r["metrics"]["mqtt_messages"] for r in reports)
    assert billed == simulator.truth_since_first_scrape()
    deliveries = [e.get("delivery") for e in events(runs[0]) if e.get("event") == "report_sent"]
    # The crashed report is sent by the next run: new to the collector, or a stored duplicate.
    assert deliveries[0] == ("created" if point == "after_spool" else "duplicate")
