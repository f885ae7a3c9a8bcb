"""``usage-agent run --once`` end to end: a real process, the simulator and a collector stub."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.simulator import Simulator
from tests.integration.agent.collector_stub import CollectorStub

SEED_NAMES = {"ENABLE_USAGE_REPORTING", "CUSTOMER_ID", "INSTANCE_ID", "BILLING_API_URL"}


@pytest.fixture
def collector() -> Iterator[CollectorStub]:
    stub = CollectorStub()
    yield stub
    stub.close()


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    with Simulator(devices=12, active=5, page_size=5) as sim:
        yield sim


@pytest.fixture
def env(tmp_path: Path, collector: CollectorStub, simulator: Simulator) -> dict[str, str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith("AGENT_") and k.upper() not in SEED_NAMES
    }
    clean.pop("COLLECTION_INTERVAL", None)
    return clean | {
        "CUSTOMER_ID": "cust-cli",
        "INSTANCE_ID": "inst-cli",
        "BILLING_API_URL": collector.url,
        "AGENT_INTERVAL": "1m",
        "AGENT_DEVICE_API_URL": f"{simulator.url}/api/devices",
        "AGENT_METRICS_URL": f"{simulator.url}/metrics",
        "AGENT_STATE_DIR": str(tmp_path / "state"),
        "AGENT_RETRY_INITIAL": "10ms",
    }


def run_once(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", "--once", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_accepted_reports_exit_zero_and_carry_exact_scraped_deltas(env, collector, simulator):
    simulator.add_messages(1000)  # before the first run: not billed
    env |= {"AGENT_INTERVAL": "1s", "AGENT_QUERY_OFFSET": "0s"}

    first = run_once(env)
    simulator.add_messages(25)
    # Each run collects only windows that ended since the last one, so run until a new window
    # has passed (real time: the process cannot share a fake clock with the test).
    runs = [first]
    while len(collector.received) < 2 and len(runs) < 20:
        runs.append(run_once(env))

    assert [r.returncode for r in runs] == [0] * len(runs), runs[-1].stderr
    reports = [body for _, body in collector.received]
    assert len(reports) >= 2
    assert reports[0]["metrics"] == {"devices": 5, "mqtt_messages": 0}
    assert sum(r["metrics"]["mqtt_messages"] for r in reports) == 25
    assert reports[0]["customer_id"] == "cust-cli"
    assert reports[0]["active_devices"] == 5
    assert reports[0]["total_devices"] == 12
    assert reports[0]["partial"] is False
    assert simulator.truth_since_first_scrape() == 25
    assert [r["window_start"] for r in reports[1:]] == [r["window_end"] for r in reports[:-1]]
    log_lines = [json.loads(line) for line in runs[-1].stderr.splitlines() if line.strip()]
    assert any(line.get("event") == "report_sent" for line in log_lines)


@pytest.mark.parametrize("position", ["run", "group"])
def test_token_from_the_secrets_dir_is_sent_as_bearer(env, collector, tmp_path, position):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "agent_collector_token").write_text("from-a-file")
    option = ["--secrets-dir", str(secrets)]
    args = [*option, "run", "--once"] if position == "group" else ["run", "--once", *option]

    result = subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert collector.received[0][0]["Authorization"] == "Bearer from-a-file"


def test_missing_ca_bundle_is_a_start_up_error(env, collector, tmp_path):
    result = run_once(env | {"AGENT_CA_BUNDLE": str(tmp_path / "nope.pem")})

    assert result.returncode == 2
    assert "AGENT_CA_BUNDLE" in result.stderr


@pytest.mark.parametrize("status", [422, 409])
def test_rejected_report_exits_non_zero(env, collector, status):
    collector.status = status

    result = run_once(env)

    assert result.returncode == 1
    assert len(collector.received) == 1


def test_unavailable_collector_is_retried_then_exits_non_zero(env, collector):
    collector.status = 503

    result = run_once(env | {"AGENT_SEND_ATTEMPTS": "3"})

    assert result.returncode == 1
    assert len(collector.received) == 3
    assert len({body["report_id"] for _, body in collector.received}) == 1


def test_unreachable_sources_defer_the_window_instead_of_sending_it(env, collector):
    env |= {
        "AGENT_DEVICE_API_URL": "http://127.0.0.1:9/api",
        "AGENT_METRICS_URL": "http://127.0.0.1:9/m",
    }

    result = run_once(env)

    assert result.returncode == 1, result.stderr
    assert collector.received == []
    assert "window_deferred" in result.stderr
    assert "devices, mqtt_messages could not be measured" in reason(result)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def reason(result: subprocess.CompletedProcess[str]) -> str:
    """The one line ``run --once`` prints when nothing was accepted."""
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("usage-agent: ")]
    return line


def test_run_once_with_prometheus_unreachable_exits_non_zero_with_the_reason(env, collector):
    del env["AGENT_METRICS_URL"]
    env |= {"AGENT_PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}"}

    result = run_once(env)

    assert result.returncode == 1, result.stderr
    assert collector.received == []
    assert "not collected, mqtt_messages" in reason(result)
    assert "could not be measured" in reason(result)
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("status", "setting"), [(401, "AGENT_COLLECTOR_TOKEN"), (403, "TOKEN")])
def test_run_once_with_a_refused_token_fails_fast(env, collector, status, setting):
    collector.status = status

    result = run_once(env)

    assert result.returncode == 1, result.stderr
    assert len(collector.received) == 1  # no five-minute backoff
    assert f"HTTP {status}" in reason(result)
    assert setting in reason(result)
    assert "Traceback" not in result.stderr


def test_run_once_with_the_report_path_in_the_collector_url_fails_fast_with_a_hint(env, collector):
    result = run_once(env | {"BILLING_API_URL": f"{collector.url}/api/usage/report"})

    assert result.returncode == 1, result.stderr
    assert len(collector.received) == 1
    assert "should be the collector's base, like https://collector:3100" in reason(result)


def test_metrics_port_taken_is_a_one_line_error_naming_agent_metrics_port(env, collector):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "agent.cli", "run"],
            env=env | {"AGENT_METRICS_HOST": "127.0.0.1", "AGENT_METRICS_PORT": str(port)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert result.returncode == 2, result.stderr
    assert "AGENT_METRICS_PORT" in reason(result)
    assert "Traceback" not in result.stderr


def test_a_bare_interval_is_seconds_and_under_the_minimum_names_the_setting(env, collector):
    result = run_once(env | {"AGENT_INTERVAL": "0.5"})

    assert result.returncode == 2
    assert reason(result) == (
        "usage-agent: invalid setting AGENT_INTERVAL: AGENT_INTERVAL must be at least 1s, got "
        "500ms: a bare number is seconds"
    )


def test_missing_identity_is_a_clear_start_up_error(env, collector, tmp_path):
    del env["CUSTOMER_ID"]

    result = run_once(env | {"AGENT_NAMESPACE": "", "AGENT_NAMESPACE_FILE": str(tmp_path / "no")})

    assert result.returncode == 2
    assert "AGENT_CUSTOMER_ID" in result.stderr
    assert collector.received == []


def test_disabled_reporting_exits_zero_without_sending(env, collector):
    result = run_once(env | {"ENABLE_USAGE_REPORTING": "false"})

    assert result.returncode == 0
    assert "reporting_disabled" in result.stderr
    assert collector.received == []


def test_unreachable_sources_give_a_partial_report_after_partial_after(env, collector):
    env |= {
        "AGENT_PARTIAL_AFTER": "0s",
        "AGENT_DEVICE_API_URL": "http://127.0.0.1:9/api",
        "AGENT_METRICS_URL": "http://127.0.0.1:9/m",
    }

    result = run_once(env)

    assert result.returncode == 0, result.stderr
    body = collector.received[0][1]
    assert body["metrics"] == {}
    assert body["partial"] is True
    assert sorted(body["missing"]) == ["devices", "mqtt_messages"]


@pytest.mark.parametrize(
    ("extra", "ready_event"),
    [({}, "agent_started"), ({"AGENT_ENABLED": "false"}, "reporting_disabled")],
    ids=["running", "disabled"],
)
def test_run_stops_cleanly_on_sigterm(env, extra, ready_event):
    with subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run"],
        env=env | extra,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stderr is not None
        seen = []
        for line in process.stderr:
            seen.append(line)
            if json.loads(line).get("event") == ready_event:
                break
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
        seen.append(process.stderr.read())

    assert code == 0, "".join(seen)
