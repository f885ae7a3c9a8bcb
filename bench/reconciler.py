"""Reconciler load check: 1,000 linked customers against the Stripe sandbox, on the real clock.

The reconciler promises two things with many customers: no more than COLLECTOR_RECONCILE_MAX_RPS
Stripe reads in any one second (for every replica together on PostgreSQL), and a round spread
over COLLECTOR_RECONCILE_INTERVAL, stretched past it only when the rate cannot fit the reads in.
Both are measured where Stripe would see them: the sandbox (`SandboxApp`, real HTTP on loopback)
runs behind a counting middleware that stamps every API request's arrival with the monotonic
clock. Each collector replica (`usage-collector serve`, a real process) points its
COLLECTOR_STRIPE_API_BASE at its own path prefix, which the middleware strips, so arrivals are
told apart by replica without asking the collector.

Set-up, per database: customers created through the `stripe` SDK, linked with the collector's
link API, one report each (in the current calendar month, their period: they have no
subscription) posted with an ingest token and forwarded (meter_event_stream mode, the fastest to
load; the reconciler reads event summaries in every meter mode alike). No subscriptions: they
add nothing the reconciler reads here (the sandbox, which once slowed to a few requests a
second with 1,000 subscribed customers, now indexes them and answers several hundred). The
reconciler stays off until the set-up is done; then the replicas start
with it on and the forwarder off, so every Stripe request is a reconcile read. Afterwards every
customer must be in sync in `GET /api/reconciliation`, with usage on its side.

Run with `python -m bench.reconciler`. Writes its figures to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import os
import platform
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from bench.report import write_section
from collector.adapters.db.credentials import CredentialStore
from collector.adapters.db.engine import create_engine
from collector.services.credentials import CredentialService
from collector.settings import CollectorSettings
from collector.stripe_sandbox import SandboxApp
from collector.stripe_sandbox.server import DroppingH11Protocol
from common.clock import SystemClock
from tests.support.binaries import free_port
from tests.support.collector_process import CollectorProcess, clean_environment
from tests.support.credentials import issue_key
from tests.support.postgres import create_database, run_postgres
from tests.support.stripe_sandbox import API_KEY, stripe_client

METRICS = 4
"""Event summaries read per customer: one per metric of the catalogue."""
PREFIX = "/r/"

Scope = MutableMapping[str, Any]
ASGI = Callable[[Scope, Any, Any], Awaitable[None]]


@dataclass(frozen=True)
class Arrival:
    at: float
    """time.monotonic() when the request reached the sandbox."""
    replica: str
    method: str
    path: str


class CountingSandbox:
    """The sandbox app behind ``/r/<replica>/``: logs each API request's arrival, then serves it."""

    def __init__(self, app: ASGI) -> None:
        self._app = app
        self.arrivals: list[Arrival] = []

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path, replica = scope["path"], ""
            if path.startswith(PREFIX):
                replica, _, rest = path[len(PREFIX) :].partition("/")
                path = f"/{rest}"
                scope = {**scope, "path": path, "raw_path": path.encode()}
            if path.startswith(("/v1/", "/v2/")):
                self.arrivals.append(Arrival(time.monotonic(), replica, scope["method"], path))
        await self._app(scope, receive, send)

    def since(self, index: int) -> list[Arrival]:
        return list(self.arrivals[index:])


@contextmanager
def counted_sandbox() -> Iterator[tuple[str, CountingSandbox]]:
    """A fresh sandbox (real clock) with its counter, served from a thread on a loopback port."""
    counter = CountingSandbox(SandboxApp(api_key=API_KEY))
    port = free_port()
    config = uvicorn.Config(
        counter,
        host="127.0.0.1",
        port=port,
        http=DroppingH11Protocol,
        lifespan="on",
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="counted-sandbox", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the counted sandbox did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", counter
    finally:
        server.should_exit = True
        thread.join(15)


@dataclass
class World:
    kind: str
    database_url: str
    sandbox_url: str
    counter: CountingSandbox
    environment: dict[str, str]
    customers: list[str]
    workdir: Path


def base_environment(database_url: str, sandbox_url: str) -> dict[str, str]:
    return clean_environment(
        COLLECTOR_DATABASE_URL=database_url,
        COLLECTOR_STRIPE_API_KEY=API_KEY,
        COLLECTOR_STRIPE_API_BASE=sandbox_url,
        COLLECTOR_STRIPE_MODE="meter_event_stream",
        COLLECTOR_LOG_LEVEL="warning",
        COLLECTOR_RATE_LIMIT_RPS="1000000",
        COLLECTOR_RATE_LIMIT_BURST="1000000",
        COLLECTOR_STRIPE_MAX_RPS="1000",
        COLLECTOR_FORWARDER_IDLE_SLEEP="0.2",
        COLLECTOR_RECONCILE_INTERVAL="off",
    )


async def create_customers(url: str, customers: list[str]) -> dict[str, str]:
    """A Stripe customer for each collector customer, by its id."""
    client = stripe_client(url)
    gate = asyncio.Semaphore(8)

    async def one(customer_id: str) -> tuple[str, str]:
        async with gate:
            customer = await client.v1.customers.create_async(
                {"metadata": {"customer_id": customer_id}}
            )
            return customer_id, str(customer.id)

    return dict(await asyncio.gather(*(one(c) for c in customers)))


def usage_window() -> tuple[datetime, datetime]:
    """A minute that ended a minute ago, inside the current calendar month."""
    now = datetime.now(UTC)
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if now - month < timedelta(minutes=3):
        time.sleep((month + timedelta(minutes=3) - now).total_seconds())
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    return end - timedelta(minutes=1), end


async def issue_tokens(database_url: str, customers: list[str]) -> dict[str, str]:
    """One ingest token per customer, as `usage-collector tokens create` issues them."""
    engine = create_engine(CollectorSettings(database_url=database_url).async_database_url())
    try:
        service = CredentialService(CredentialStore(engine), SystemClock())
        return {c: (await service.create_token(c)).secret for c in customers}
    finally:
        await engine.dispose()


async def link_and_report(
    collector_url: str, editor: str, stripe_ids: dict[str, str], tokens: dict[str, str]
) -> None:
    """Link every customer through the API, then post one report each."""
    start, end = usage_window()
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=collector_url, timeout=60, limits=limits) as http:
        gate = asyncio.Semaphore(16)

        async def link(customer_id: str) -> None:
            async with gate:
                answer = await http.post(
                    f"/api/forwarding/customers/{customer_id}/link",
                    json={"stripe_customer_id": stripe_ids[customer_id]},
                    headers={"authorization": f"Bearer {editor}"},
                )
                answer.raise_for_status()

        async def report(n: int, customer_id: str) -> None:
            body = {
                "customer_id": customer_id,
                "instance_id": "cluster",
                "window_start": start.isoformat(),
                "window_end": end.isoformat(),
                "metrics": {"mqtt_messages": 100 + n, "devices": 1 + n % 50, "storage_gb": 2.5},
            }
            async with gate:
                answer = await http.post(
                    "/api/usage/report",
                    json=body,
                    headers={"authorization": f"Bearer {tokens[customer_id]}"},
                )
                answer.raise_for_status()

        await asyncio.gather(*(link(c) for c in stripe_ids))
        await asyncio.gather(*(report(n, c) for n, c in enumerate(stripe_ids)))


def wait_forwarded(collector_url: str, viewer: str, limit: float = 900.0) -> None:
    deadline = time.monotonic() + limit
    status: dict[str, Any] = {}
    with httpx.Client(base_url=collector_url, timeout=30) as http:
        while time.monotonic() < deadline:
            status = http.get(
                "/api/forwarding/status", headers={"authorization": f"Bearer {viewer}"}
            ).json()
            forwards, batches = status["forwards"], status["batches"]
            if forwards and not {"pending", "batched"} & set(forwards):
                if batches.get("pending") or batches.get("dead"):
                    raise RuntimeError(f"forwarding did not deliver everything: {status}")
                return
            time.sleep(0.5)
    raise RuntimeError(f"forwarding did not settle: {status}")


@contextmanager
def world(kind: str, customers: int, workdir: Path) -> Iterator[World]:
    """A fresh sandbox and database: ``customers`` linked, with usage in Stripe."""
    with database(kind, workdir) as database_url, counted_sandbox() as (url, counter):
        environment = base_environment(database_url, url)
        setup = CollectorProcess(environment, workdir / f"setup-{kind}.log")
        setup.start()
        try:
            setup.run_cli("stripe", "setup")
            names = [f"bench-{n}" for n in range(customers)]
            began = time.monotonic()
            stripe_ids = asyncio.run(create_customers(url, names))
            editor = issue_key(database_url, "editor").secret
            viewer = issue_key(database_url, "viewer").secret
            tokens = asyncio.run(issue_tokens(database_url, names))
            asyncio.run(link_and_report(setup.url, editor, stripe_ids, tokens))
            wait_forwarded(setup.url, viewer)
            print(f"{kind}: {customers} customers set up in {time.monotonic() - began:.0f} s")
        finally:
            setup.stop()
        yield World(kind, database_url, url, counter, environment, names, workdir)


@contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{workdir / f'reconcile-{time.monotonic_ns()}.db'}"
        return
    with run_postgres() as server:
        yield create_database(server, "bench_reconcile")


def rounds_done(collector: CollectorProcess) -> float:
    text = httpx.get(f"{collector.url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "usage_collector_reconcile_rounds_total":
                return float(sample.value)
    return 0.0


def busiest(times: list[float], width: float) -> int:
    """Most arrivals in any window [t, t + width) starting at an arrival."""
    return max((bisect.bisect_left(times, t + width) - i for i, t in enumerate(times)), default=0)


def measure(w: World, replicas: int, interval: float, rps: float) -> dict[str, Any]:
    """Run ``replicas`` collectors with the reconciler on until every one that reconciles (the
    leader, on PostgreSQL) finished one round."""
    per_round = METRICS * len(w.customers)  # event summaries; the meter list is read besides
    mark = len(w.counter.arrivals)
    names = [f"replica{k}" for k in range(replicas)]
    processes = [
        CollectorProcess(
            w.environment
            | {
                "COLLECTOR_STRIPE_API_BASE": f"{w.sandbox_url}{PREFIX}{name}",
                "COLLECTOR_FORWARDER_ENABLED": "false",
                "COLLECTOR_RECONCILE_INTERVAL": str(interval),
                "COLLECTOR_RECONCILE_MAX_RPS": str(rps),
            },
            w.workdir / f"{w.kind}-{name}.log",
        )
        for name in names
    ]
    limit = time.monotonic() + 2 * replicas * per_round / rps + 2 * interval + 120
    try:
        for process in processes:
            process.start()
        started = time.monotonic()
        while True:
            summaries = [a for a in w.counter.since(mark) if a.path.endswith("/event_summaries")]
            counts = [sum(1 for a in summaries if a.replica == name) for name in names]
            active = [k for k, count in enumerate(counts) if count]
            finished = [k for k in active if counts[k] >= per_round and rounds_done(processes[k])]
            # A follower that were to reconcile too would have begun long before a round ends.
            if active and finished == active and time.monotonic() - started > 10:
                done = len(w.counter.arrivals)
                break
            if time.monotonic() > limit:
                raise RuntimeError(f"rounds did not finish: summaries read by replica {counts}")
            time.sleep(1.0)
        viewer = issue_key(w.database_url, "viewer").secret
        results = httpx.get(
            f"{processes[0].url}/api/reconciliation",
            headers={"authorization": f"Bearer {viewer}"},
            timeout=60,
        ).json()
    finally:
        # Followers first: a leader stopping first would hand its round over to one of them.
        readers = {a.replica for a in w.counter.since(mark)}
        for k in sorted(range(replicas), key=lambda k: names[k] in readers):
            processes[k].stop()
    seen = w.counter.since(mark)[: done - mark]
    reads = [a for a in seen if a.method == "GET" and a.path.startswith("/v1/billing/meters")]
    rounds, ends = [], []
    reconciling = [name for name in names if any(a.replica == name for a in reads)]
    for name in reconciling:
        mine = [a for a in reads if a.replica == name]
        last = [a.at for a in mine if a.path.endswith("/event_summaries")][per_round - 1]
        rounds.append(last - mine[0].at)
        ends.append(last)
    first, end = reads[0].at, max(ends)
    window = [a.at for a in reads if a.at <= end]
    span = end - first
    in_sync = [r for r in results if r["state"] == "in_sync"]
    measured = [r for r in in_sync if any(m["collector"] not in (None, "0") for m in r["metrics"])]
    return {
        "database": w.kind,
        "replicas": replicas,
        "reconciling": len(reconciling),
        "customers": len(w.customers),
        "interval": interval,
        "max_rps": rps,
        "reads": len(window),
        "other": len(seen) - len(reads),
        "rounds": rounds,
        "shortest": len(reconciling) * (1 + per_round) / rps,
        "span": span,
        "mean": len(window) / span,
        "busiest_1s": busiest(window, 1.0),
        "busiest_10s": busiest(window, 10.0) / 10,
        "in_sync": len(in_sync),
        "with_usage": len(measured),
        "listed": len(results),
        "load": os.getloadavg()[0],
    }


def render(rows: list[dict[str, Any]]) -> str:
    lines = [
        "## Reconciler (`bench/reconciler.py`)",
        "",
        f"{datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, 2 cores shared by the collector "
        "replicas (`usage-collector serve`), the sandbox (`SandboxApp` under uvicorn, real "
        "clock), PostgreSQL and whatever else ran on the machine (its load average at the end "
        "of each run is listed). Each customer is linked and has usage in Stripe (no "
        "subscription: see the module docstring); a check reads 4 event summaries (one per "
        "metric), a round also reads the meter list once. Reads are counted at the sandbox by "
        "a counting middleware (arrival time), never by the collector. A round is its first "
        "read to its last.",
        "",
        "| database | replicas (reconciling) | customers | INTERVAL s | MAX_RPS | reads | "
        "round s | shortest round at MAX_RPS s | busiest 1 s (reads) | busiest 10 s "
        "(reads/s) | mean reads/s | in sync afterwards (with usage) | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rounds = ", ".join(f"{s:.1f}" for s in r["rounds"])
        lines.append(
            f"| {r['database']} | {r['replicas']} ({r['reconciling']}) | {r['customers']} | "
            f"{r['interval']:g} | {r['max_rps']:g} | {r['reads']} | {rounds} | "
            f"{r['shortest']:.1f} | {r['busiest_1s']} | {r['busiest_10s']:.1f} | "
            f"{r['mean']:.1f} | {r['in_sync']}/{r['customers']} ({r['with_usage']}) | "
            f"{r['load']:.1f} |"
        )
    exceeded = [r for r in rows if r["busiest_1s"] > r["max_rps"]]
    lines += [
        "",
        "MAX_RPS exceeded in any one-second window of the sandbox's arrivals: "
        + (
            "**yes**: " + ", ".join(f"{r['database']} x{r['replicas']}" for r in exceeded)
            if exceeded
            else "never"
        )
        + ".",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=1000, help="Linked customers (count).")
    parser.add_argument("--rps", type=float, default=50, help="COLLECTOR_RECONCILE_MAX_RPS.")
    parser.add_argument(
        "--short", type=float, default=30, help="An interval too short for the reads (s)."
    )
    parser.add_argument("--long", type=float, default=100, help="An interval the reads fit in (s).")
    parser.add_argument("--no-sqlite", action="store_true", help="Skip the SQLite runs.")
    parser.add_argument("--no-postgres", action="store_true", help="Skip the PostgreSQL run.")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if not args.no_sqlite:
            with world("sqlite", args.customers, workdir) as w:
                rows.append(measure(w, 1, args.short, args.rps))
                print(rows[-1])
                rows.append(measure(w, 1, args.long, args.rps))
                print(rows[-1])
        if not args.no_postgres:
            with world("postgresql", args.customers, workdir) as w:
                rows.append(measure(w, 2, args.short, args.rps))
                print(rows[-1])
    text = render(rows)
    write_section("reconciler", text)
    print(text)
    failed = [
        r
        for r in rows
        if r["busiest_1s"] > r["max_rps"] or not r["in_sync"] == r["with_usage"] == r["customers"]
    ]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
