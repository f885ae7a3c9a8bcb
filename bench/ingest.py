"""Ingest benchmark: unique reports against the collector and a no-op ceiling, in one run.

Targets: the no-op Litestar endpoint; one collector on SQLite; one and two collector processes
on one PostgreSQL database (two wrk runs side by side, half the connections each). Every target
is measured once per round, rounds interleave the targets, and each figure is the median over
rounds, so a burst of load from elsewhere on the machine moves one round, not one target.

Run with `make bench` or `python -m bench.ingest`. Writes its figures to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from bench.report import write_section
from bench.servers import Served, collectors_served, cpu_seconds, noop_served
from bench.wrk import WrkResult, run_wrk
from collector.adapters.db.engine import create_engine
from collector.adapters.db.tables import ReportRow
from tests.support.postgres import PostgresServer, create_database, run_postgres

CONNECTIONS = 32
BIN = Path(sys.executable).parent
AGENTS = 100_000
"""The projection's fleet: agents reporting every minute."""
MIN_REPLICAS = 2
"""Fewest replicas the projection plans: one can restart or fail while another carries the load."""
UTILISATION = 0.5
"""Share of a replica's saturation rate the projection plans for: the half load measured here."""


def rows_for(database_url: str, run: str) -> tuple[int, int]:
    """(rows, distinct report ids) stored by one run."""

    async def count() -> tuple[int, int]:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                statement = select(
                    func.count(ReportRow.id), func.count(func.distinct(ReportRow.report_id))
                ).where(ReportRow.customer_id.like(f"bench-{run}-%"))
                rows, distinct = (await conn.execute(statement)).one()
                return int(rows), int(distinct)
        finally:
            await engine.dispose()

    return asyncio.run(count())


@dataclass
class Database:
    url: str | None
    postgres: PostgresServer | None = None

    def cpu_seconds(self) -> float:
        """PostgreSQL's CPU: the postmaster, its reaped children and its live backends."""
        if self.postgres is None:
            return 0.0
        postmaster = self.postgres.socket_dir.parent / "data" / "postmaster.pid"
        pid = int(postmaster.read_text().split()[0])
        total = _process_and_reaped(pid)
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(stat[1]) == pid:
                    total += cpu_seconds(int(entry.name))
        return total


def _process_and_reaped(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")


@contextmanager
def database(kind: str, workdir: Path, name: str) -> Iterator[Database]:
    if kind == "sqlite":
        yield Database(f"sqlite+aiosqlite:///{workdir / f'{name}.db'}")
        return
    with run_postgres() as server:
        yield Database(create_database(server, "bench"), server)


def ingest_token(database_url: str | None, run: str) -> str | None:
    """An ingest token for the run's customer (wrk's one thread is `bench-{run}-1`)."""
    if database_url is None:
        return None
    completed = subprocess.run(
        [str(BIN / "usage-collector"), "tokens", "create", "--customer", f"bench-{run}-1"],
        env={**os.environ, "COLLECTOR_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        check=True,
    )
    return completed.stdout.strip().splitlines()[-1]


@dataclass(frozen=True)
class Run:
    """One load against one target: wrk's view, and the CPU the servers spent on it."""

    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    server_cpu_ms: float
    database_cpu_ms: float
    rows_ok: bool = True


def measure(
    served: Sequence[Served],
    run: str,
    seconds: int,
    workdir: Path,
    db: Database,
    delay_ms: int = 0,
) -> Run:
    """Drive every server at once, ``CONNECTIONS`` connections split between them."""
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    names = [f"{run}-p{n + 1}" if len(served) > 1 else run for n in range(len(served))]
    tokens = [ingest_token(db.url, name) for name in names]
    cpu_before = sum(s.cpu_seconds() for s in served)
    db_before = db.cpu_seconds()
    with ThreadPoolExecutor(len(served)) as pool:
        futures = [
            pool.submit(
                run_wrk,
                f"{s.url}/api/usage/report",
                run=name,
                window=(end - timedelta(hours=1), end),
                seconds=seconds,
                connections=CONNECTIONS // len(served),
                workdir=workdir,
                delay_ms=delay_ms,
                token=token,
            )
            for s, name, token in zip(served, names, tokens, strict=True)
        ]
        results: list[WrkResult] = [f.result() for f in futures]
    server_cpu = sum(s.cpu_seconds() for s in served) - cpu_before
    database_cpu = db.cpu_seconds() - db_before
    requests = sum(r.requests for r in results)
    rows_ok = True
    if db.url is not None:
        for name, result in zip(names, results, strict=True):
            rows, distinct = rows_for(db.url, name)
            accepted = result.requests - result.non_2xx
            per_server = CONNECTIONS // len(served)
            rows_ok &= rows == distinct and accepted <= rows <= accepted + per_server
    return Run(
        requests=requests,
        rps=sum(r.rps for r in results),
        p50_ms=max(r.p50_ms for r in results),
        p99_ms=max(r.p99_ms for r in results),
        non_2xx=sum(r.non_2xx for r in results),
        server_cpu_ms=1000 * server_cpu / max(1, requests),
        database_cpu_ms=1000 * database_cpu / max(1, requests),
        rows_ok=rows_ok,
    )


def half_load_delay_ms(rps: float) -> int:
    """Mean per-connection pause that brings CONNECTIONS connections to about half of ``rps``."""
    return max(1, round(CONNECTIONS * 1000 / (rps / 2)))


@dataclass
class Target:
    label: str
    kind: str
    processes: int
    env: dict[str, str] = field(default_factory=dict)
    full: list[Run] = field(default_factory=list)
    half: list[Run] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    cpu_ratios: list[float] = field(default_factory=list)

    def median(self, attribute: str, runs: list[Run] | None = None) -> float:
        return float(statistics.median(getattr(r, attribute) for r in (runs or self.full)))

    @property
    def ok(self) -> bool:
        runs = self.full + self.half
        return all(r.rows_ok and not r.non_2xx for r in runs)


def run_target(target: Target, round_: int, seconds: int, workdir: Path, warmup: int) -> Run:
    """One round of one collector target: full load, then half of what full load reached.

    ``warmup`` seconds of full load come first and are not counted: the first requests of a
    fresh process prepare statements, fill caches and open connections.
    """
    lane = "-nolane" if target.env else ""
    name = f"{target.kind}{target.processes}{lane}-{round_}"
    with (
        database(target.kind, workdir, name) as db,
        collectors_served(
            db.url or "", target.processes, log_level="info", log_dir=workdir, env=target.env
        ) as served,
    ):
        if warmup:
            measure(served, f"{name}-warm", warmup, workdir, db)
        full = measure(served, f"{name}-full", seconds, workdir, db)
        half = measure(
            served, f"{name}-half", seconds, workdir, db, delay_ms=half_load_delay_ms(full.rps)
        )
    target.full.append(full)
    target.half.append(half)
    print(f"{name}: full {full}\n{name}: half {half}", flush=True)
    return full


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10, help="Length of each wrk run (s).")
    parser.add_argument("--rounds", type=int, default=3, help="Rounds over all targets.")
    parser.add_argument(
        "--warmup",
        type=int,
        default=2,
        help="Seconds of load before each target's measured runs, not counted (s).",
    )
    args = parser.parse_args()
    noop = Target("no-op Litestar endpoint", "noop", 1)
    targets = [
        Target("collector, SQLite", "sqlite", 1),
        Target("collector, PostgreSQL", "postgresql", 1),
        Target("collector, PostgreSQL, 2 processes", "postgresql", 2),
        Target(
            "collector, SQLite, without the ingest lane",
            "sqlite",
            1,
            env={"COLLECTOR_INGEST_LANE": "false"},
        ),
    ]
    loads: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for round_ in range(1, args.rounds + 1):
            with noop_served() as served:
                if args.warmup:
                    measure([served], f"noop-{round_}-warm", args.warmup, workdir, Database(None))
                ceiling = measure([served], f"noop-{round_}", args.seconds, workdir, Database(None))
            noop.full.append(ceiling)
            print(f"noop-{round_}: {ceiling}", flush=True)
            for target in targets:
                full = run_target(target, round_, args.seconds, workdir, args.warmup)
                target.ratios.append(full.rps / ceiling.rps)
                target.cpu_ratios.append(ceiling.server_cpu_ms / full.server_cpu_ms)
            loads.append(os.getloadavg()[0])
    write_section("ingest", render(args, noop, targets, loads))


def render(
    args: argparse.Namespace, noop: Target, targets: list[Target], loads: list[float]
) -> str:
    lines = [
        "## Ingest (`bench/ingest.py`)",
        "",
        f"{datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, {os.cpu_count()} cores shared by "
        f"the servers, PostgreSQL and wrk; {args.rounds} rounds, each target once per round, "
        f"medians shown; each target first takes {args.warmup} s of load that is not counted, "
        f"then wrk -t1 -c{CONNECTIONS} -d{args.seconds}s (two processes: two wrk runs "
        f"side by side, -c{CONNECTIONS // 2} each); every request is a unique v1 report with an "
        "ingest token (rate limit lifted). Collectors log at `info`, the default, to a file. "
        "`without the ingest lane` sets `COLLECTOR_INGEST_LANE=false`: every request through "
        "Litestar's full handler, as before the lane. "
        "CPU is the server processes' user and system time per report (all threads); "
        "PostgreSQL's is its postmaster and backends. Half load paces each connection with "
        "exponential pauses (wrk's `delay()`) whose mean brings the load to half of what full "
        "load reached (a fixed pause keeps the connections in step: see below). `vs no-op` is "
        "reports/s over the "
        "no-op's requests/s in the same round; `CPU vs no-op` is the no-op's CPU per request "
        "over the target's CPU per report, the ratio a CPU-bound server reaches, and the steadier "
        f"one while other work shares the machine (load average after each round: "
        f"{', '.join(f'{load:.1f}' for load in loads)}).",
        "",
        "| target | reports/s | p50 ms | p99 ms | vs no-op (per round) | CPU ms/report | "
        "CPU vs no-op | PostgreSQL CPU ms/report | half load: reports/s | p99 ms | "
        "CPU ms/report | PostgreSQL CPU ms/report | rows ok |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {noop.label} | {noop.median('rps'):.0f} | {noop.median('p50_ms'):.1f} | "
        f"{noop.median('p99_ms'):.1f} | 1.00 | {noop.median('server_cpu_ms'):.2f} | 1.00 "
        "| | | | | | |",
    ]
    for t in targets:
        postgres = t.kind == "postgresql"
        cells = [
            t.label,
            f"{t.median('rps'):.0f}",
            f"{t.median('p50_ms'):.1f}",
            f"{t.median('p99_ms'):.1f}",
            f"{statistics.median(t.ratios):.2f} ({', '.join(f'{r:.2f}' for r in t.ratios)})",
            f"{t.median('server_cpu_ms'):.2f}",
            f"{statistics.median(t.cpu_ratios):.2f}",
            f"{t.median('database_cpu_ms'):.2f}" if postgres else "",
            f"{t.median('rps', t.half):.0f}",
            f"{t.median('p99_ms', t.half):.1f}",
            f"{t.median('server_cpu_ms', t.half):.2f}",
            f"{t.median('database_cpu_ms', t.half):.2f}" if postgres else "",
            "yes" if t.ok else "NO",
        ]
        lines.append(f"| {' | '.join(cells)} |")
    lines += [
        "",
        "Targets: at least 0.5x the no-op ceiling; p99 at most 100 ms at half load; no lost or "
        "duplicated rows (`rows ok`: every 2xx report is stored, each once).",
        "",
        *projection(noop, targets),
    ]
    return "\n".join(lines)


def projection(noop: Target, targets: list[Target]) -> list[str]:
    """Reports/s and ingest replicas for AGENTS agents reporting every minute."""
    rate = AGENTS / 60
    one, two = targets[1], targets[2]
    cpu = max(one.median("server_cpu_ms"), two.median("server_cpu_ms"))
    saturated = 1000 / cpu
    needed = math.ceil(rate / (saturated * UTILISATION))
    replicas = max(needed, MIN_REPLICAS)
    cpu_half = max(one.median("server_cpu_ms", one.half), two.median("server_cpu_ms", two.half))
    per_replica = rate / replicas
    cores = per_replica * cpu_half / 1000
    postgres_half = max(
        one.median("database_cpu_ms", one.half), two.median("database_cpu_ms", two.half)
    )
    return [
        "### Projection: ingest",
        "",
        f"{AGENTS:,} agents reporting every minute send **{rate:,.0f} reports/s**. On "
        f"PostgreSQL a collector process spends {cpu:.2f} ms of CPU per report at full load (the "
        f"larger of the one- and two-process figures), so one process, whose event loop uses "
        f"one core, saturates near {saturated:,.0f} reports/s. Planned at "
        f"{UTILISATION:.0%} of that, the half load whose p99 the table shows, ingest needs "
        f"{needed} {'replica' if needed == 1 else 'replicas'}; plan **{replicas} replicas**, so "
        f"that one can restart or fail while the others carry the load ({per_replica:,.0f} "
        "reports/s each). At that rate a report "
        f"costs more CPU ({cpu_half:.2f} ms: group commit gathers fewer reports per "
        f"transaction), so request about {cores:.1f} core per replica; PostgreSQL needs about "
        f"{rate * postgres_half / 1000:.1f} cores for the inserts ({postgres_half:.2f} ms per "
        "report at half load). Two processes reached "
        f"{two.median('rps') / one.median('rps'):.2f}x one process here, on 2 cores that also run "
        "PostgreSQL and wrk: the count is planned from CPU per report, not from this machine's "
        "reports/s. Stripe calls per mode: see Forwarding.",
    ]


if __name__ == "__main__":
    main()
