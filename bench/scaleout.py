"""Scale-out benchmark (PostgreSQL): the forwarding drain with one and with two replicas, Stripe
answering after a fixed latency; and the time from a replica's SIGKILL until the batches it held
leases on are sent by the other, at the default lease.

Run with `python -m bench.scaleout` (or `python -m bench.forwarding --only scaleout`). Writes its
figures to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.forwarding_world import (
    LOADS,
    World,
    accepted_events,
    busiest_second,
    clear_calls,
    load_note,
    post_all,
    report,
    sample_load,
    settle,
    stripe_calls,
    world,
)
from bench.report import write_section
from tests.support.collector_process import SETTLE, CollectorProcess
from tests.support.leases import batch_states, forwarder_owner, leased_by
from tests.support.postgres import PostgresServer, create_database, run_postgres

SCALEOUT_LATENCY = 0.1
"""Seconds the sandbox takes to answer each call in the scale-out runs, about Stripe's own."""
TAKEOVER_REPORTS = 4000
"""The backlog the takeover runs forward: enough to keep both replicas sending for minutes."""
DEFAULT_LEASE, DEFAULT_RENEWAL = 15.0, 5.0


def start_replicas(
    environment: dict[str, str], workdir: Path, count: int, tag: str
) -> list[CollectorProcess]:
    """``count`` `serve` processes on one environment, started side by side."""
    processes = [CollectorProcess(environment, workdir / f"{tag}-{i}.log") for i in range(count)]
    with ThreadPoolExecutor(count) as pool:
        list(pool.map(lambda process: process.start(), processes))
    return processes


def drain_replicas(
    workdir: Path, server: PostgresServer, mode: str, replicas: int, reports: int
) -> dict[str, Any]:
    """A stored backlog forwarded by ``replicas`` processes on PostgreSQL, one event per window.

    Stripe answers 429 to everything until every replica is up, so they all start together.
    """
    sample_load()
    customers = 200
    base = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=20)
    bodies = [report(f"bench-{k % customers}", k // customers, base, 3) for k in range(reports)]
    database_url = create_database(server, f"drain_{replicas}_{time.monotonic_ns()}")
    settings = {
        "COLLECTOR_STRIPE_COALESCE": "false",
        "COLLECTOR_STRIPE_MAX_RPS": "1000",
        "COLLECTOR_STRIPE_CONCURRENCY": "16",
        "COLLECTOR_STRIPE_BACKOFF_CAP": "0.25",
        "COLLECTOR_FORWARDER_IDLE_SLEEP": "0.05",
    }
    with world(
        workdir, mode, customers, database_url, COLLECTOR_FORWARDER_ENABLED="false", **settings
    ) as w:
        asyncio.run(post_all(w, bodies, rate=None))
        w.collector.stop()
        clear_calls(w)
        w.sandbox.faults(error_429_rate=1.0)
        environment = w.collector.environment | {"COLLECTOR_FORWARDER_ENABLED": "true"}
        processes = start_replicas(environment, workdir, replicas, f"drain-{mode}-{replicas}")
        try:
            cpu_before = [cpu_seconds(p.pid) for p in processes]
            started = time.monotonic()
            w.sandbox.clear_faults()
            w.sandbox.faults(latency_seconds=SCALEOUT_LATENCY)
            settle(w, url=processes[0].url)
            cpu = [cpu_seconds(p.pid) - b for p, b in zip(processes, cpu_before, strict=True)]
            shares = [acknowledged(p) for p in processes]
            calls = [c for c in stripe_calls(w) if c["fault"] is None and c["method"] == "POST"]
            events = accepted_events(w, mode)
        finally:
            for process in processes:
                process.stop()
    seconds = max(c["finished"] for c in calls) - started
    return {
        "mode": mode,
        "replicas": replicas,
        "events": events,
        "calls": len(calls),
        "seconds": seconds,
        "events_per_s": events / seconds,
        "calls_per_s": len(calls) / seconds,
        "busiest": busiest_second([c["monotonic"] for c in calls]),
        "cpu": sum(cpu),
        "shares": [n / max(1.0, sum(shares)) for n in shares],
    }


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def acknowledged(process: CollectorProcess) -> float:
    """Report metrics whose batches this replica settled, from its /metrics."""
    text = httpx.get(f"{process.url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("usage_collector_forwards_acknowledged_total{")
    )


def takeover(workdir: Path, server: PostgresServer, samples: int) -> list[dict[str, Any]]:
    """Two replicas forward; one is SIGKILLed while it holds leases, ``samples`` times.

    For each kill: how long until each batch it held was sent again by the other replica
    (the first call carrying its identifier after the kill, from the sandbox's log).
    """
    customers = 50
    base = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=20)
    bodies = [
        report(f"bench-{k % customers}", k // customers, base, 4) for k in range(TAKEOVER_REPORTS)
    ]
    database_url = create_database(server, f"takeover_{time.monotonic_ns()}")
    settings = {
        "COLLECTOR_STRIPE_COALESCE": "false",
        "COLLECTOR_STRIPE_MAX_RPS": "1000",
        "COLLECTOR_FORWARDER_IDLE_SLEEP": "0.05",
        "COLLECTOR_LOG_LEVEL": "info",
    }
    rows: list[dict[str, Any]] = []
    with world(
        workdir,
        "meter_events",
        customers,
        database_url,
        COLLECTOR_FORWARDER_ENABLED="false",
        **settings,
    ) as w:
        asyncio.run(post_all(w, bodies, rate=None))
        w.collector.stop()
        w.sandbox.faults(latency_seconds=SCALEOUT_LATENCY)
        environment = w.collector.environment | {"COLLECTOR_FORWARDER_ENABLED": "true"}
        processes = start_replicas(environment, workdir, 2, "takeover")
        victim = processes[1]
        try:
            for _ in range(samples):
                rows.append(kill_and_measure(w, victim, database_url))
                victim.start()
        finally:
            for process in processes:
                process.stop()
    return rows


def kill_and_measure(w: World, victim: CollectorProcess, database_url: str) -> dict[str, Any]:
    sample_load()
    owner = forwarder_owner(victim)
    deadline = time.monotonic() + 60
    while not leased_by(database_url, owner):
        if time.monotonic() > deadline:
            raise RuntimeError("the replica to kill never held a lease")
        time.sleep(0.01)
    # Frozen first: a call it made just before the kill can reach the sandbox's log after it,
    # where it would pass for the other replica's resend.
    killed_at = victim.kill_settled()
    held = leased_by(database_url, owner)
    identifiers = [b.identifier for b in held]
    deadline = time.monotonic() + 120
    while set(batch_states(database_url, identifiers).values()) != {"sent"}:
        if time.monotonic() > deadline:
            raise RuntimeError("the killed replica's batches were never sent")
        time.sleep(0.1)
    calls = stripe_calls(w)
    resent = [
        min(
            c["monotonic"]
            for c in calls
            if identifier in c["identifiers"] and c["monotonic"] > killed_at
        )
        - killed_at
        for identifier in identifiers
    ]
    return {
        "held": len(held),
        "lapsed_first": min(b.lapses_at for b in held) - killed_at,
        "lapsed_last": max(b.lapses_at for b in held) - killed_at,
        "resent_first": min(resent),
        "resent_last": max(resent),
    }


def scaleout(args: argparse.Namespace, workdir: Path) -> None:
    LOADS.clear()
    with run_postgres() as server:
        drains = [
            drain_replicas(workdir, server, mode, replicas, args.reports)
            for mode in ("meter_events", "meter_event_stream")
            for replicas in (1, 2)
        ]
        for row in drains:
            print(row)
        kills = takeover(workdir, server, args.kills)
        for row in kills:
            print(row)
    text = render_scaleout(args, drains, kills)
    write_section("scaleout", text)
    print(text)


def render_scaleout(
    args: argparse.Namespace, drains: list[dict[str, Any]], kills: list[dict[str, Any]]
) -> str:
    one = {r["mode"]: r for r in drains if r["replicas"] == 1}
    lines = [
        "## Scale-out (`bench/scaleout.py`)",
        "",
        f"{datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, 2 cores shared by every replica "
        "(`usage-collector serve` on one PostgreSQL), PostgreSQL, the sandbox (answering each "
        f"call after {SCALEOUT_LATENCY} s, about Stripe's own round trip) and the load generator."
        + load_note(),
        "",
        f"**Drain with replicas** of a stored backlog ({args.reports} reports x 3 metrics, 200 "
        "customers, one event per window, COLLECTOR_STRIPE_CONCURRENCY=16 per replica). Stripe "
        "answers 429 until every replica is up; time is from then to the last answer.",
        "",
        "| mode | replicas | meter events | Stripe calls | s | events/s | vs one replica | "
        "share of each replica | replicas' CPU s | busiest second (calls) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in drains:
        ratio = r["events_per_s"] / one[r["mode"]]["events_per_s"]
        shares = " / ".join(f"{share:.0%}" for share in r["shares"])
        lines.append(
            f"| {r['mode']} | {r['replicas']} | {r['events']} | {r['calls']} | "
            f"{r['seconds']:.1f} | {r['events_per_s']:.0f} | {ratio:.2f}x | {shares} | "
            f"{r['cpu']:.1f} | {r['busiest']} |"
        )
    lines += [
        "",
        f"**Takeover after SIGKILL**: two replicas forward a backlog ({TAKEOVER_REPORTS} reports, "
        "`meter_events`, default COLLECTOR_STRIPE_CONCURRENCY=4 and lease: "
        f"COLLECTOR_STRIPE_LEASE={DEFAULT_LEASE:.0f} s, COLLECTOR_STRIPE_LEASE_RENEWAL="
        f"{DEFAULT_RENEWAL:.0f} s); one is SIGKILLed while it holds leases, then restarted, "
        f"{len(kills)} times. Seconds from the kill: when the leases it held lapsed (read from "
        "the database), and when the other replica sent those batches again (the sandbox's log).",
        "",
        "| kill | batches held | leases lapsed after s | first resent after s | "
        "last resent after s |",
        "|---|---|---|---|---|",
    ]
    for n, k in enumerate(kills, 1):
        lines.append(
            f"| {n} | {k['held']} | {k['lapsed_first']:.1f}-{k['lapsed_last']:.1f} | "
            f"{k['resent_first']:.1f} | {k['resent_last']:.1f} |"
        )
    worst = max(k["resent_last"] for k in kills)
    lines += [
        "",
        "A killed replica's batches wait for their leases to lapse, "
        f"{DEFAULT_LEASE - DEFAULT_RENEWAL:.0f} to {DEFAULT_LEASE:.0f} s after the kill "
        "depending on when they were claimed or last renewed. Calls here take 0.1 s, so the "
        "batches in flight at the kill were claimed moments before and wait almost a full "
        "lease. The other replica sends them within a round of the lapse (at most "
        f"{worst:.1f} s after the kill here). A shorter COLLECTOR_STRIPE_LEASE shortens this in "
        "proportion; the integration test runs with 2 s. The replica is frozen (SIGSTOP) for "
        f"{SETTLE} s before the kill: a call it made just before could reach the sandbox's log "
        "after the kill and pass for the other replica's resend.",
        "",
        *projection(one),
    ]
    return "\n".join(lines)


AGENTS = 100_000
METRICS = 3
LIVE_CALLS_PER_S = 1000
"""Stripe's live-mode limit on calls the settings reference gives for COLLECTOR_STRIPE_MAX_RPS."""


def projection(one: dict[str, dict[str, Any]]) -> list[str]:
    """100k agents reporting every minute: Stripe calls/s per mode and replicas for forwarding."""
    reports_per_s = AGENTS / 60
    low, high = reports_per_s, reports_per_s * METRICS
    events = one["meter_events"]["events_per_s"]
    stream = one["meter_event_stream"]["events_per_s"]
    lag_low, lag_high = AGENTS / LIVE_CALLS_PER_S, AGENTS * METRICS / LIVE_CALLS_PER_S
    return [
        "### Projection: forwarding for 100k agents reporting every minute",
        "",
        f"{AGENTS:,} agents, one report a minute each: {reports_per_s:,.0f} reports/s and "
        f"{reports_per_s * METRICS:,.0f} report metrics/s ({METRICS} metrics). Every window's "
        "message count is an increment and needs an event; the device count and the storage "
        f"peak need one only when they change what Stripe bills. So {low:,.0f} to {high:,.0f} "
        "events/s must reach Stripe.",
        "",
        "| mode | Stripe calls/s without coalescing | with coalescing | replicas to forward it |",
        "|---|---|---|---|",
        f"| meter_events | {low:,.0f}-{high:,.0f}, over Stripe's live {LIVE_CALLS_PER_S:,}/s | "
        f"{LIVE_CALLS_PER_S:,} (COLLECTOR_STRIPE_MAX_RPS): each customer's metric is sent every "
        f"{lag_low:.0f}-{lag_high:.0f} s, its windows folded into one event | "
        f"{math.ceil(LIVE_CALLS_PER_S / events)} at this run's {events:.0f} calls/s per replica |",
        f"| meter_event_stream | {low / 100:,.0f}-{high / 100:,.0f} (100 events per call) | "
        "the same: nothing to fold at one report a minute | "
        f"{math.ceil(low / stream)}-{math.ceil(high / stream)} at this run's {stream:.0f} "
        "events/s per replica |",
        f"| usage_records | {low:,.0f}-{high:,.0f}, like meter_events | {LIVE_CALLS_PER_S:,}, "
        "like meter_events | as meter_events; and the API is gone from 2025-03-31.basil on |",
        "",
        "The per-replica rates are lower bounds: the replicas shared two cores with PostgreSQL, "
        "the sandbox and the load generator. Only the stream mode carries this load without "
        "delaying billing by minutes; meter events need coalescing under the rate limit to keep "
        "up at all.",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reports", type=int, default=1000, help="Backlog per drain run.")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs in the takeover run.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scaleout(args, Path(tmp))


if __name__ == "__main__":
    main()
