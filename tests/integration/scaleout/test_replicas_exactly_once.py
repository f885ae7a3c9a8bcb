"""Three collector processes on one PostgreSQL share ingest and forwarding, exactly once.

Many customers report at once to whichever replica is up. Stripe (the sandbox, on the real
clock) fails often: 500s and 429s, connections dropped before and after it acted, latency. One
replica is SIGKILLed while its calls are in flight and restarted, again and again. Then Stripe
answers slower than the lease, and no batch is sent twice: its holder keeps renewing. At the end
every meter summary equals the truth, Stripe holds each identifier once, no identifier was ever
in flight in two requests at once, and after the last kill the killed replica's batches are
resent by the others once their leases lapse, and the whole drain ends within a bound derived
from the lease.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.stripe_sandbox.faults import CallRecord
from collector.stripe_sandbox.in_flight import overlaps
from common.clock import SystemClock
from tests.integration.scaleout.replicas import WEBHOOK_SECRET, Replicas, truth
from tests.support.collector_process import clean_environment
from tests.support.leases import Leased, forwarder_owner, leased_by
from tests.support.stripe_sandbox import API_KEY, Sandbox, running_sandbox

pytestmark = pytest.mark.postgres

CUSTOMERS = tuple(f"cust-scale-{n:02d}" for n in range(12))
HOURS = 8
KILLS = 3
VICTIM = 1
LEASE = 2.0
RENEWAL = 0.5
BACKOFF_CAP = 1.0
IDLE = 0.05
LATENCY = 0.2
"""Below LEASE - RENEWAL: a killed replica's last call is answered before its lease can lapse."""
SLOW = 3.0
"""Longer than the lease: only renewals keep another replica from sending the batch too."""
FAULTS = {
    "error_500_rate": 0.15,
    "error_429_rate": 0.05,
    "drop_rate": 0.05,
    "drop_after_rate": 0.05,
    "error_500_after_rate": 0.05,
    "latency_seconds": LATENCY,
}
RESEND_ALLOWANCE = 2.0
"""Seconds after a lease lapses within which another replica must have resent the batch:
a few idle rounds, the claim and the call, on a 2-core machine running other suites too."""
WORK_ALLOWANCE = 10.0
"""Seconds to send what is still waiting at the last kill, on the same machine."""
DRAIN_BOUND = LEASE + BACKOFF_CAP + WORK_ALLOWANCE
WAIT_LIMIT = 60.0


@pytest.fixture
def real_time_sandbox() -> Iterator[Sandbox]:
    with running_sandbox(clock=SystemClock(), seed=17) as sandbox:
        yield sandbox


def environment(database_url: str, sandbox: Sandbox) -> dict[str, str]:
    return clean_environment(
        COLLECTOR_DATABASE_URL=database_url,
        COLLECTOR_STRIPE_API_KEY=API_KEY,
        COLLECTOR_STRIPE_API_BASE=sandbox.url,
        COLLECTOR_STRIPE_MODE="meter_events",
        COLLECTOR_STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        COLLECTOR_STRIPE_MAX_RPS="200",
        COLLECTOR_STRIPE_TIMEOUT="5",
        COLLECTOR_STRIPE_LEASE=str(LEASE),
        COLLECTOR_STRIPE_LEASE_RENEWAL=str(RENEWAL),
        COLLECTOR_STRIPE_BACKOFF_CAP=str(BACKOFF_CAP),
        COLLECTOR_FORWARDER_IDLE_SLEEP=str(IDLE),
        COLLECTOR_LEADER_CHECK="0.5",
        COLLECTOR_RECONCILE_INTERVAL="off",
        COLLECTOR_RATE_LIMIT_RPS="1000",
        COLLECTOR_RATE_LIMIT_BURST="1000",
        COLLECTOR_LOG_LEVEL="info",
    )


def calls(sandbox: Sandbox) -> list[CallRecord]:
    return list(sandbox.app.faults.calls)


def wait_in_flight(sandbox: Sandbox, since: int) -> None:
    """Until a call made after ``since`` is in flight at Stripe (bounded)."""
    deadline = time.monotonic() + WAIT_LIMIT
    while time.monotonic() < deadline:
        if any(c.finished is None for c in calls(sandbox)[since:]):
            return
        time.sleep(0.002)
    pytest.fail("no Stripe call was ever in flight to be interrupted")


def kill_holding_leases(replicas: Replicas, database_url: str) -> tuple[float, list[Leased]]:
    """SIGKILL the victim once one of its leased batches is in flight at Stripe.

    It is frozen first (``kill_settled``): a call it made just before may reach the sandbox's
    log a moment later, after the kill, where it would pass for another replica's resend. The
    wait is below LEASE - RENEWAL, so its leases are still held when it is killed.
    """
    victim = replicas.processes[VICTIM]
    owner = forwarder_owner(victim)
    deadline = time.monotonic() + WAIT_LIMIT
    while time.monotonic() < deadline:
        held = {b.identifier for b in leased_by(database_url, owner)}
        flying = {i for c in calls(replicas.sandbox) if c.finished is None for i in c.identifiers}
        if held & flying:
            killed_at = victim.kill_settled()
            return killed_at, leased_by(database_url, owner)
        time.sleep(0.005)
    pytest.fail(f"replica {VICTIM} never held a lease on a call in flight")


def wait_settled(replicas: Replicas) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_LIMIT
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = replicas.get("/api/forwarding/status")
        waiting = {"pending", "batched"} & set(status["forwards"])
        if not waiting and not status["batches"].get("pending"):
            return status
        time.sleep(0.05)
    pytest.fail(f"forwarding did not settle: {status}")


def first_resend(log: list[CallRecord], identifier: str, after: float) -> float:
    starts = [c.monotonic for c in log if identifier in c.identifiers and c.monotonic > after]
    assert starts, f"{identifier} was never resent after the kill"
    return min(starts)


def test_three_replicas_bill_exactly_once_through_faults_and_kills(
    postgres_url: str, real_time_sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox = real_time_sandbox
    replicas = Replicas.create(3, environment(postgres_url, sandbox), sandbox, tmp_path)
    rng = random.Random("scaleout")
    try:
        replicas.start_all()
        replicas.prepare(CUSTOMERS)
        bodies, windows = replicas.reports(CUSTOMERS, HOURS, rng)
        sandbox.control.faults(seed=5, **FAULTS)
        waves = [bodies[i :: KILLS + 1] for i in range(KILLS + 1)]
        victim = replicas.processes[VICTIM]
        for wave in waves[: KILLS - 1]:
            since = len(calls(sandbox))
            replicas.post_all(wave)
            wait_in_flight(sandbox, since)
            victim.kill()
            victim.start()
            replicas.post_all([rng.choice(bodies)])  # a repeat adds nothing

        # Stripe slower than the lease, no errors: every batch is sent exactly once.
        sandbox.control.clear_faults()
        wait_settled(replicas)
        sandbox.control.faults(latency_seconds=SLOW)
        slow_from = len(calls(sandbox))
        replicas.post_all(waves[KILLS - 1])
        wait_settled(replicas)
        slow = Counter(i for c in calls(sandbox)[slow_from:] for i in c.identifiers)
        assert slow, "nothing was sent while Stripe was slow"
        assert max(slow.values()) == 1, [i for i, n in slow.items() if n > 1]

        # The last kill, measured: errors off, latency on, so only the lease delays the drain.
        sandbox.control.faults(latency_seconds=LATENCY)
        replicas.post_all(waves[KILLS])
        killed_at, held = kill_holding_leases(replicas, postgres_url)
        status = wait_settled(replicas)
        drained_in = time.monotonic() - killed_at
        victim.start()

        log = calls(sandbox)
        assert held, "the killed replica held no lease"
        for batch in held:
            resent_at = first_resend(log, batch.identifier, killed_at)
            # Nobody resends before the lease lapses, and somebody soon after.
            assert resent_at >= batch.lapses_at - 0.1, (batch, resent_at)
            assert resent_at <= batch.lapses_at + RESEND_ALLOWANCE, (batch, resent_at)
        assert drained_in <= DRAIN_BOUND, drained_in
        delays = [first_resend(log, b.identifier, killed_at) - b.lapses_at for b in held]
        print(
            f"last kill: {len(held)} leased batches resent {min(delays):.2f}-{max(delays):.2f} s "
            f"after their leases lapsed; drained {drained_in:.1f} s after the kill "
            f"(bound {DRAIN_BOUND:.0f} s)"
        )

        assert victim.kills == KILLS
        faulted = Counter(c.fault for c in log if c.fault)
        assert faulted["500"], faulted
        assert faulted["drop_after"], faulted
        assert "dead" not in status["batches"], status
        assert set(status["forwards"]) <= {"sent", "superseded"}, status
        assert sum(status["forwards"].values()) == len(bodies) * 3
        for customer_id in CUSTOMERS:
            assert replicas.billed(customer_id) == truth(windows[customer_id]), customer_id

        sent = replicas.get("/api/forwarding/batches", state="sent", limit=1000)
        assert len(sent) == status["batches"]["sent"]
        accepted = Counter(e["identifier"] for e in sandbox.control.meter_events())
        assert max(accepted.values()) == 1
        assert set(accepted) == {b["identifier"] for b in sent}
        carried = Counter(i for c in log for i in set(c.identifiers))
        resent = {i for i, n in carried.items() if n > 1}
        assert resent, "no batch was ever resent"
        assert resent <= set(accepted)
        assert overlaps(log, time.monotonic()) == []
    finally:
        replicas.stop_all()
