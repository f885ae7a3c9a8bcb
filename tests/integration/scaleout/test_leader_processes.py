"""Three collector processes on one PostgreSQL: one leads and alone runs the reconciler; when it
is SIGKILLed another takes over within the leader check interval, and only that one reconciles.

Who leads and who reconciles is read from each process's own ``/metrics``: the
``usage_collector_leader`` gauge and ``usage_collector_reconcile_checks_total``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.clock import SystemClock
from tests.integration.scaleout.replicas import WEBHOOK_SECRET, Replicas, log_events, scrape
from tests.support.collector_process import CollectorProcess, clean_environment
from tests.support.stripe_sandbox import API_KEY, Sandbox, running_sandbox

pytestmark = pytest.mark.postgres

CHECK = 0.5
TAKEOVER_ALLOWANCE = 2.0
"""Seconds beyond one check for the scrape, the statement and a loaded 2-core machine."""
WAIT_LIMIT = 60.0
CUSTOMERS = ("cust-lead-a", "cust-lead-b")


@pytest.fixture
def real_time_sandbox() -> Iterator[Sandbox]:
    with running_sandbox(clock=SystemClock(), seed=23) as sandbox:
        yield sandbox


def reconciled(process: CollectorProcess) -> float:
    samples = scrape(process)
    return sum(
        v for k, v in samples.items() if k.startswith("usage_collector_reconcile_checks_total")
    )


def leaders(processes: list[CollectorProcess]) -> list[CollectorProcess]:
    return [p for p in processes if scrape(p)["usage_collector_leader"] == 1]


def one_leader(processes: list[CollectorProcess]) -> CollectorProcess:
    """The single leader among ``processes`` once there is one (bounded)."""
    deadline = time.monotonic() + WAIT_LIMIT
    while time.monotonic() < deadline:
        found = leaders(processes)
        assert len(found) <= 1, [p.url for p in found]
        if found:
            return found[0]
        time.sleep(0.02)
    pytest.fail("no replica became the leader")


def wait_reconciling(process: CollectorProcess, more_than: float) -> float:
    deadline = time.monotonic() + WAIT_LIMIT
    while time.monotonic() < deadline:
        checks = reconciled(process)
        if checks > more_than:
            return checks
        time.sleep(0.05)
    pytest.fail(f"{process.url} never reconciled")


def test_one_replica_reconciles_and_another_takes_over_when_it_is_killed(
    postgres_url: str, real_time_sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox = real_time_sandbox
    environment = clean_environment(
        COLLECTOR_DATABASE_URL=postgres_url,
        COLLECTOR_STRIPE_API_KEY=API_KEY,
        COLLECTOR_STRIPE_API_BASE=sandbox.url,
        COLLECTOR_STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        COLLECTOR_LEADER_CHECK=str(CHECK),
        COLLECTOR_RECONCILE_INTERVAL="1",
        COLLECTOR_RECONCILE_MAX_RPS="50",
        COLLECTOR_LOG_LEVEL="info",
    )
    replicas = Replicas.create(3, environment, sandbox, tmp_path)
    try:
        replicas.start_all()
        replicas.prepare(CUSTOMERS)
        processes = replicas.processes
        leader = one_leader(processes)
        wait_reconciling(leader, 2)
        followers = [p for p in processes if p is not leader]
        assert [reconciled(p) for p in followers] == [0, 0]

        killed_at = time.monotonic()
        leader.kill()
        successor = one_leader(followers)
        took = time.monotonic() - killed_at
        bystander = next(p for p in followers if p is not successor)

        assert took <= CHECK + TAKEOVER_ALLOWANCE, took
        wait_reconciling(successor, 0)
        assert reconciled(bystander) == 0
        leader.start()
        assert leaders(processes) == [successor]
        assert [e["identity"] for e in log_events(successor, "leadership_acquired")]
        print(f"leader killed: another led {took:.2f} s later (check every {CHECK} s)")
    finally:
        replicas.stop_all()
