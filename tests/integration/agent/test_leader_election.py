"""Two agents, one Lease: only the leader reports, and a follower takes over where it stopped.

The agents run in this process on one manual clock against a kmock Kubernetes API (identity
from the namespace, the Lease with optimistic concurrency), the simulator (paged devices and a
/metrics counter: the scrape baselines must travel through the Lease) and the real collector.
Each agent has its own state directory, like two pods with emptyDir spools.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from agent.cli.wiring import Runtime, build_runtime
from agent.settings import load_settings
from common.clock import ManualClock
from demo.simulator import Simulator
from tests.integration.agent.kube_lease_api import KubeTestServer, kube_test_server, namespace
from tests.integration.agent.real_collector import stored_reports
from tests.integration.agent.test_cli import SEED_NAMES

NAMESPACE = "customer-acme"
TICK = timedelta(seconds=5)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("AGENT_") or name.upper() in SEED_NAMES:
            monkeypatch.delenv(name)
    monkeypatch.delenv("COLLECTION_INTERVAL", raising=False)


async def start_agent(
    name: str, state: Path, kube: KubeTestServer, collector_url: str, sim: Simulator, clock
) -> Runtime:
    settings = load_settings(
        collector_url=collector_url,
        interval="1m",
        query_offset="5s",
        jitter="0s",
        device_api_url=f"{sim.url}/api/devices",
        metrics_url=f"{sim.url}/metrics",
        state_dir=state,
        leader_election=True,
        lease_name="usage-agent",
        lease_duration="15s",
        pod_name=name,
        namespace=NAMESPACE,
    )
    runtime = await build_runtime(settings, clock, kube=kube.api(), registry=CollectorRegistry())
    await runtime.loop.start()
    runtime.loop.catchup.ensure_watermark(backlog=0)
    return runtime


def sent(runtime: Runtime) -> float:
    return sum(
        sample.value
        for metric in runtime.metrics.reports_sent.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


async def tick(runtimes: list[Runtime]) -> None:
    for runtime in runtimes:
        assert runtime.loop.elector is not None
        await runtime.loop.elector.step()
    for runtime in runtimes:
        await runtime.loop.cycle()


async def test_only_the_leader_reports_and_a_follower_takes_over_exactly(tmp_path, real_collector):
    collector = real_collector
    # Recent: the collector refuses windows older than Stripe's 35 days.
    start = datetime.now(UTC).replace(minute=0, second=2, microsecond=0) - timedelta(hours=2)
    clock = ManualClock(start)
    annotations = {"usage.billing/customer-id": "cust-ha"}
    async with kube_test_server({NAMESPACE: namespace(NAMESPACE, "uid-acme", annotations)}) as kube:
        with Simulator(devices=7, active=3) as sim:
            a = await start_agent("agent-a", tmp_path / "a", kube, collector.url, sim, clock)
            b = await start_agent("agent-b", tmp_path / "b", kube, collector.url, sim, clock)
            try:
                # Both alive for six minutes: only one of them reports.
                for step in range(72):
                    sim.add_messages(step % 7 + 1)
                    clock.advance(TICK)
                    await tick([a, b])
                assert a.loop.elector.is_leader
                assert not b.loop.elector.is_leader
                assert sent(a) >= 5
                assert sent(b) == 0
                assert b.health.check()[0]  # a follower is healthy without sending

                # The leader dies without a word (no release); the follower waits out the lease.
                before = sent(a)
                for step in range(72):
                    sim.add_messages(step % 5 + 2)
                    clock.advance(TICK)
                    await tick([b])
                assert b.loop.elector.is_leader
                assert sent(b) >= 5
                assert sent(a) == before
                assert kube.store.leases[NAMESPACE, "usage-agent"]["spec"]["leaseTransitions"] == 1

                # Quiet until every window with traffic is billed.
                for _ in range(30):
                    clock.advance(TICK)
                    await tick([b])
            finally:
                await a.aclose()
                await b.aclose()

            reports = stored_reports(collector, "cust-ha")
            truth = sim.truth_since_first_scrape()

    windows = [(r["window_start"], r["window_end"]) for r in reports]
    assert len(set(windows)) == len(windows)  # every window once
    assert [s for s, _ in windows[1:]] == [e for _, e in windows[:-1]]  # no gap across failover
    assert all(r["instance_id"] == "uid-acme" for r in reports)  # identity from the namespace
    assert all(r["metrics"]["devices"] == 3 for r in reports)
    billed = sum(r["metrics"].get("mqtt_messages", 0) for r in reports)
    assert billed == truth > 0
