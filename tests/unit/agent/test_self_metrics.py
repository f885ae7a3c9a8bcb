"""/metrics and /healthz on the agent's port, from an injected registry and a manual clock."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client import CollectorRegistry

from agent.adapters.metrics_server import MetricsServer
from agent.errors import ConfigurationError
from agent.services.telemetry import AgentMetrics, Health
from common.clock import ManualClock

START = datetime(2024, 3, 1, 10, tzinfo=UTC)
INTERVAL = timedelta(hours=1)


def serve(health: Health, registry: CollectorRegistry) -> MetricsServer:
    return MetricsServer(registry, health.check, host="127.0.0.1", port=0).start()


def test_metrics_lists_every_self_metric():
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry)
    metrics.spool_depth.set(3)
    metrics.send_failures.labels("503").inc()
    metrics.source_errors.labels("prometheus").inc()
    server = serve(Health(ManualClock(START), INTERVAL), registry)
    try:
        text = httpx.get(f"http://127.0.0.1:{server.port}/metrics").text
    finally:
        server.stop()

    for name in (
        "usage_agent_last_collection_timestamp_seconds",
        "usage_agent_last_send_timestamp_seconds",
        "usage_agent_spool_reports 3.0",
        "usage_agent_oldest_unsent_window_age_seconds",
        "usage_agent_spool_compactions_total",
        'usage_agent_source_errors_total{source="prometheus"} 1.0',
        'usage_agent_send_failures_total{status="503"} 1.0',
        "usage_agent_is_leader",
    ):
        assert name in text


def test_healthz_fails_after_three_intervals_without_a_send():
    clock = ManualClock(START)
    health = Health(clock, INTERVAL)
    server = serve(health, CollectorRegistry())
    url = f"http://127.0.0.1:{server.port}/healthz"
    try:
        clock.advance(2 * INTERVAL)
        health.sent(clock.now())
        clock.advance(3 * INTERVAL - timedelta(seconds=1))
        healthy = httpx.get(url).status_code
        clock.advance(timedelta(seconds=2))
        stale = httpx.get(url)
        health.leader = False
        follower = httpx.get(url).status_code
    finally:
        server.stop()

    assert healthy == 200
    assert stale.status_code == 503
    assert "nothing sent" in stale.text
    assert follower == 200


def test_healthz_is_ok_when_reporting_is_disabled():
    clock = ManualClock(START)
    health = Health(clock, INTERVAL, enabled=False)
    clock.advance(10 * INTERVAL)

    assert health.check()[0]


def test_metrics_port_taken_is_a_configuration_error_naming_agent_metrics_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigurationError, match="AGENT_METRICS_PORT") as caught:
            MetricsServer(CollectorRegistry(), lambda: (True, "ok"), host="127.0.0.1", port=port)

    assert f"127.0.0.1:{port}" in str(caught.value)
