"""Forwarding benchmark: the collector (`usage-collector serve`, SQLite) forwarding to the Stripe
sandbox (`usage-collector stripe sandbox`), both real processes on loopback.

- Drain: a stored backlog is forwarded with the worker started afterwards; events/s and Stripe
  calls per 1,000 reports come from the sandbox's call log (its own monotonic clock).
- Steady: reports at a steady rate; latency is a report's `created_at` (accepted) to the
  `sent_at` of the last of its batches (Stripe acknowledged), both from the collector's database.
- Every run checks the sandbox's call log: no one-second window holds more than
  COLLECTOR_STRIPE_MAX_RPS calls.

Run with `python -m bench.forwarding`. Writes its figures to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import platform
import subprocess
import tempfile
import time
from collections.abc import Iterator
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
def world(workdir: Path, mode: str, customers: int, **settings: str) -> Iterator[World]:
    """A fresh sandbox and database; customers subscribed (back-dated) and linked."""
    database_url = f"sqlite+aiosqlite:///{workdir / f'fwd-{time.monotonic_ns()}.db'}"
    with sandbox_process() as (url, control):
        environment = clean_environment(
            COLLECTOR_DATABASE_URL=database_url,
            COLLECTOR_STRIPE_API_KEY=API_KEY,
            COLLECTOR_STRIPE_API_BASE=url,
            COLLECTOR_STRIPE_MODE=mode,
            COLLECTOR_LOG_LEVEL="warning",
            COLLECTOR_RATE_LIMIT_RPS="1000000",
            COLLECTOR_RATE_LIMIT_BURST="1000000",
            **settings,
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


def settle(w: World, limit: float = 600.0) -> None:
    key = issue_key(w.database_url, "viewer").secret
    deadline = time.monotonic() + limit
    with httpx.Client(base_url=w.collector.url, timeout=30) as http:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reports", type=int, default=1000, help="Backlog per drain run.")
    parser.add_argument("--seconds", type=int, default=20, help="Length of each steady run (s).")
    parser.add_argument("--rate", type=int, default=100, help="Steady ingest rate (reports/s).")
    args = parser.parse_args()
    modes = ("meter_events", "meter_event_stream", "usage_records")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
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


def render(args: argparse.Namespace, drains: list[dict], steadies: list[dict]) -> str:
    lines = [
        "## Forwarding (`bench/forwarding.py`)",
        "",
        f"{datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, 2 cores shared by the collector "
        "(`usage-collector serve`, SQLite, one process), the sandbox (`usage-collector stripe "
        "sandbox`, real clock, no faults) and the load generator.",
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
