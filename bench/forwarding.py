"""Forwarding benchmark: the collector (`usage-collector serve`) forwarding to the Stripe sandbox
(`usage-collector stripe sandbox`), both real processes on loopback.

- Drain: a stored backlog is forwarded with the worker started afterwards; events/s and Stripe
  calls per 1,000 reports come from the sandbox's call log (its own monotonic clock).
- Steady: reports at a steady rate; latency is a report's `created_at` (accepted) to the
  `sent_at` of the last of its batches (Stripe acknowledged), both from the collector's database.
- Scale-out: `bench/scaleout.py`, run here too unless `--only forwarding`.
- Every run checks the sandbox's call log: no one-second window holds more than
  COLLECTOR_STRIPE_MAX_RPS calls.

Run with `python -m bench.forwarding` (`--only scaleout` for the scale-out part alone). Writes
its figures to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bench.forwarding_world import (
    LOADS,
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
from bench.scaleout import scaleout
from collector.adapters.db.engine import create_engine
from collector.adapters.db.tables import BatchRow, ForwardRow, ReportRow


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
