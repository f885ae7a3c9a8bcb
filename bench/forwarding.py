"""Forwarding benchmark: the collector (`usage-collector serve`) forwarding to the Stripe sandbox
(`usage-collector stripe sandbox`), both real processes on loopback.

- Drain: a stored backlog is forwarded with the worker started afterwards; events/s and Stripe
  calls per 1,000 reports come from the sandbox's call log (its own monotonic clock).
- Steady: reports at a steady rate; latency is a report's `created_at` (accepted) to the
  `sent_at` of the last of its batches (Stripe acknowledged), both from the collector's database.
- Scale-out (PostgreSQL): the drain with one and with two replicas, Stripe answering after a
  fixed latency; and the time from a replica's SIGKILL until the batches it held leases on are
  sent by the other, at the default lease.
- Every run checks the sandbox's call log: no one-second window holds more than
  COLLECTOR_STRIPE_MAX_RPS calls.

Run with `python -m bench.forwarding` (`--only scaleout` for the scale-out part alone). Writes
its figures to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import math
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from bench.report import write_section
from collector.adapters.db.engine import create_engine
from collector.adapters.db.tables import BatchRow, ForwardRow, ReportRow
from demo.processes import wait_until_ready
from tests.support.binaries import free_port
from tests.support.collector_process import CollectorProcess, clean_environment, collector_script
from tests.support.credentials import issue_key, issue_token
from tests.support.leases import batch_states, forwarder_owner, leased_by
from tests.support.postgres import PostgresServer, create_database, run_postgres
from tests.support.stripe_sandbox import API_KEY, SandboxControl, stripe_client

PRICE_KEYS = ("device_usage", "mqtt_messages", "storage_gb")


@dataclass
class World:
    sandbox: SandboxControl
    sandbox_url: str
    collector: CollectorProcess
    database_url: str
    tokens: dict[str, str]


@contextmanager
def sandbox_process() -> Iterator[tuple[str, SandboxControl]]:
    port = free_port()
    argv = [collector_script(), "stripe", "sandbox", "--port", str(port)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(f"{url}/_sandbox/health", proc)
        control = SandboxControl(url)
        yield url, control
        control.close()
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@contextmanager
def world(
    workdir: Path, mode: str, customers: int, database_url: str | None = None, **settings: str
) -> Iterator[World]:
    """A fresh sandbox and database (SQLite unless given); customers subscribed and linked."""
    database_url = (
        database_url or f"sqlite+aiosqlite:///{workdir / f'fwd-{time.monotonic_ns()}.db'}"
    )
    with sandbox_process() as (url, control):
        environment = clean_environment(
            **{
                "COLLECTOR_DATABASE_URL": database_url,
                "COLLECTOR_STRIPE_API_KEY": API_KEY,
                "COLLECTOR_STRIPE_API_BASE": url,
                "COLLECTOR_STRIPE_MODE": mode,
                "COLLECTOR_LOG_LEVEL": "warning",
                "COLLECTOR_RATE_LIMIT_RPS": "1000000",
                "COLLECTOR_RATE_LIMIT_BURST": "1000000",
                # Its reads have a limit of their own; the figures are the forwarder's alone.
                "COLLECTOR_RECONCILE_INTERVAL": "off",
                **settings,
            }
        )
        collector = CollectorProcess(environment, workdir / "collector.log")
        collector.start()
        legacy = ["--legacy"] if mode == "usage_records" else []
        output = collector.run_cli("stripe", "setup", *legacy)
        prices = {
            p[2]: p[1] for p in (line.split() for line in output.splitlines()) if p[:1] == ["price"]
        }
        client = stripe_client(url)
        editor = issue_key(database_url, "editor").secret
        control.set_clock(int(time.time()) - 2 * 86400)
        tokens: dict[str, str] = {}
        with httpx.Client(base_url=collector.url, timeout=30) as http:
            for n in range(customers):
                customer_id = f"bench-{n}"
                customer = client.v1.customers.create({"metadata": {"customer_id": customer_id}})
                if mode == "usage_records":
                    items = [{"price": prices[key]} for key in PRICE_KEYS]
                    client.v1.subscriptions.create({"customer": customer.id, "items": items})
                http.post(
                    f"/api/forwarding/customers/{customer_id}/link",
                    json={"stripe_customer_id": customer.id},
                    headers={"authorization": f"Bearer {editor}"},
                ).raise_for_status()
                tokens[customer_id] = issue_token(database_url, customer_id).secret
        control.set_clock(int(time.time()))
        try:
            yield World(control, url, collector, database_url, tokens)
        finally:
            collector.stop()


def report(customer_id: str, k: int, base: datetime, seed: int) -> dict[str, Any]:
    """Window ``k`` of a customer: one minute, in the past, every value changing."""
    start = base + timedelta(minutes=k)
    return {
        "customer_id": customer_id,
        "instance_id": "cluster",
        "window_start": start.isoformat(),
        "window_end": (start + timedelta(minutes=1)).isoformat(),
        "metrics": {
            "mqtt_messages": 100 + (k * 7 + seed) % 900,
            "devices": 1 + (k + seed) % 50,
            "storage_gb": ((k * 13 + seed) % 400) / 10,
        },
    }


async def post_all(w: World, bodies: list[dict[str, Any]], rate: float | None) -> None:
    """POST every body; at ``rate``/s on a fixed schedule, or as fast as 32 connections go."""
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=w.collector.url, timeout=30, limits=limits) as http:
        gate = asyncio.Semaphore(32)

        async def post(body: dict[str, Any], at: float | None) -> None:
            if at is not None:
                await asyncio.sleep(max(0.0, at - time.monotonic()))
            async with gate:
                token = w.tokens[body["customer_id"]]
                answer = await http.post(
                    "/api/usage/report", json=body, headers={"authorization": f"Bearer {token}"}
                )
                answer.raise_for_status()

        start = time.monotonic() + 0.2
        await asyncio.gather(
            *(post(b, start + i / rate if rate else None) for i, b in enumerate(bodies))
        )


def settle(w: World, limit: float = 600.0, url: str | None = None) -> None:
    key = issue_key(w.database_url, "viewer").secret
    deadline = time.monotonic() + limit
    with httpx.Client(base_url=url or w.collector.url, timeout=30) as http:
        while time.monotonic() < deadline:
            status = http.get(
                "/api/forwarding/status", headers={"authorization": f"Bearer {key}"}
            ).json()
            if not {"pending", "batched"} & set(status["forwards"]) and not status["batches"].get(
                "pending"
            ):
                assert "dead" not in status["batches"], status
                return
            time.sleep(0.2)
    raise RuntimeError(f"forwarding did not settle: {status}")


def busiest_second(times: list[float]) -> int:
    """Most calls in any one-second window [t, t + 1) of the call log."""
    times = sorted(times)
    return max((bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times)), default=0)


def clear_calls(w: World) -> None:
    httpx.delete(f"{w.sandbox_url}/_sandbox/calls", timeout=30).raise_for_status()


def stripe_calls(w: World) -> list[dict[str, Any]]:
    return [c for c in w.sandbox.calls() if c["path"].startswith(("/v1/", "/v2/"))]


def accepted_events(w: World, mode: str) -> int:
    return len(w.sandbox.usage_records() if mode == "usage_records" else w.sandbox.meter_events())


def drain(workdir: Path, mode: str, coalesce: bool, reports: int, max_rps: int) -> dict[str, Any]:
    sample_load()
    customers = 200
    base = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=20)
    bodies = [report(f"bench-{k % customers}", k // customers, base, 1) for k in range(reports)]
    settings = {
        "COLLECTOR_STRIPE_COALESCE": str(coalesce).lower(),
        "COLLECTOR_STRIPE_MAX_RPS": str(max_rps),
        "COLLECTOR_STRIPE_CONCURRENCY": "16",
        "COLLECTOR_FORWARDER_IDLE_SLEEP": "0.05",
    }
    with world(workdir, mode, customers, COLLECTOR_FORWARDER_ENABLED="false", **settings) as w:
        asyncio.run(post_all(w, bodies, rate=None))
        w.collector.stop()
        clear_calls(w)
        w.collector.environment["COLLECTOR_FORWARDER_ENABLED"] = "true"
        w.collector.start()
        settle(w)
        calls = stripe_calls(w)
        stamps = [c["monotonic"] for c in calls]
        seconds = max(stamps) - min(stamps)
        events = accepted_events(w, mode)
    return {
        "mode": mode,
        "coalesce": coalesce,
        "reports": reports,
        "events": events,
        "calls": len(calls),
        "seconds": seconds,
        "events_per_s": events / seconds,
        "forwards_per_s": 3 * reports / seconds,
        "calls_per_1000": 1000 * len(calls) / reports,
        "max_rps": max_rps,
        "busiest": busiest_second(stamps),
    }


def latencies(database_url: str) -> list[float]:
    """Per report: seconds from accepted to the last of its batches acknowledged."""

    async def query() -> list[float]:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    select(ReportRow.id, ReportRow.created_at, BatchRow.sent_at)
                    .join(ForwardRow, ForwardRow.report_pk == ReportRow.id)
                    .join(BatchRow, BatchRow.id == ForwardRow.batch_id)
                )
                done: dict[int, float] = {}
                for report_pk, created, sent in rows:
                    lag = (sent - created).total_seconds()
                    done[report_pk] = max(done.get(report_pk, 0.0), lag)
                return sorted(done.values())
        finally:
            await engine.dispose()

    return asyncio.run(query())


def steady(workdir: Path, mode: str, rate: int, seconds: int, idle: float) -> dict[str, Any]:
    sample_load()
    customers = 10
    base = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=20)
    total = rate * seconds
    bodies = [report(f"bench-{k % customers}", k // customers, base, 2) for k in range(total)]
    settings = {"COLLECTOR_FORWARDER_IDLE_SLEEP": str(idle), "COLLECTOR_STRIPE_MAX_RPS": "100"}
    with world(workdir, mode, customers, **settings) as w:
        clear_calls(w)
        asyncio.run(post_all(w, bodies, rate=rate))
        settle(w)
        lags = latencies(w.collector.environment["COLLECTOR_DATABASE_URL"])
        calls = stripe_calls(w)
    return {
        "mode": mode,
        "idle": idle,
        "reports": total,
        "measured": len(lags),
        "p50": lags[len(lags) // 2],
        "p95": lags[int(len(lags) * 0.95)],
        "max": lags[-1],
        "calls_per_1000": 1000 * len(calls) / total,
        "busiest": busiest_second([c["monotonic"] for c in calls]),
        "max_rps": 100,
    }


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
    killed_at = time.monotonic()
    victim.kill()
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reports", type=int, default=1000, help="Backlog per drain run.")
    parser.add_argument("--seconds", type=int, default=20, help="Length of each steady run (s).")
    parser.add_argument("--rate", type=int, default=100, help="Steady ingest rate (reports/s).")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs in the takeover run.")
    parser.add_argument(
        "--only", choices=("all", "forwarding", "scaleout"), default="all", help="Which part."
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if args.only in ("all", "forwarding"):
            forwarding(args, workdir)
        if args.only in ("all", "scaleout"):
            scaleout(args, workdir)


LOADS: list[float] = []
"""The one-minute load average at the start of each run: other work on the machine."""


def load_note() -> str:
    if not LOADS:
        return ""
    return (
        f" One-minute load average at the start of each run: {min(LOADS):.1f} to "
        f"{max(LOADS):.1f} (other work shared the machine)."
    )


def sample_load() -> None:
    LOADS.append(os.getloadavg()[0])


def forwarding(args: argparse.Namespace, workdir: Path) -> None:
    LOADS.clear()
    modes = ("meter_events", "meter_event_stream", "usage_records")
    drains = [drain(workdir, m, False, args.reports, 1000) for m in modes]
    drains += [drain(workdir, m, True, args.reports, 1000) for m in modes[:2]]
    drains.append(drain(workdir, "meter_events", False, 300, 25))
    for row in drains:
        print(row)
    steadies = [steady(workdir, m, args.rate, args.seconds, 1.0) for m in modes]
    steadies.append(steady(workdir, "meter_event_stream", args.rate, args.seconds, 0.1))
    for row in steadies:
        print(row)
    write_section("forwarding", render(args, drains, steadies))
    print(render(args, drains, steadies))


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
        "## Scale-out (`bench/forwarding.py`)",
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
        "proportion; the integration test runs with 2 s.",
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


def render(args: argparse.Namespace, drains: list[dict], steadies: list[dict]) -> str:
    lines = [
        "## Forwarding (`bench/forwarding.py`)",
        "",
        f"{datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, 2 cores shared by the collector "
        "(`usage-collector serve`, SQLite, one process), the sandbox (`usage-collector stripe "
        "sandbox`, real clock, no faults) and the load generator." + load_note(),
        "",
        f"**Drain** of a stored backlog ({args.reports} reports x 3 metrics, 200 customers; "
        "forwarder started after ingest; COLLECTOR_STRIPE_CONCURRENCY=16). Time is first to "
        "last Stripe call in the sandbox's log.",
        "",
        "| mode | coalesce | MAX_RPS | meter events | Stripe calls | s | events/s | "
        "report metrics/s | calls per 1,000 reports | busiest second (calls) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in drains:
        lines.append(
            f"| {r['mode']} | {'on' if r['coalesce'] else 'off'} | {r['max_rps']} | {r['events']} "
            f"| {r['calls']} | {r['seconds']:.1f} | {r['events_per_s']:.0f} | "
            f"{r['forwards_per_s']:.0f} | {r['calls_per_1000']:.0f} | {r['busiest']} |"
        )
    lines += [
        "",
        f"**Steady** ingest at {args.rate} reports/s for {args.seconds} s (10 customers, "
        "coalescing on, COLLECTOR_STRIPE_MAX_RPS=100). Latency: report `created_at` to the "
        "`sent_at` of the last of its batches, from the collector's database.",
        "",
        "| mode | IDLE_SLEEP s | reports | p50 s | p95 s | max s | calls per 1,000 reports | "
        "busiest second (calls) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in steadies:
        lines.append(
            f"| {r['mode']} | {r['idle']} | {r['measured']}/{r['reports']} | {r['p50']:.2f} | "
            f"{r['p95']:.2f} | {r['max']:.2f} | {r['calls_per_1000']:.0f} | {r['busiest']} |"
        )
    exceeded = [r for r in drains + steadies if r["busiest"] > r["max_rps"]]
    lines += [
        "",
        "Configured RPS exceeded in any one-second window of the call log: "
        + ("**yes**: " + ", ".join(r["mode"] for r in exceeded) if exceeded else "never")
        + ".",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
