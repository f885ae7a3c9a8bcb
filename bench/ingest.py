"""Ingest benchmark: unique reports against the collector (SQLite, PostgreSQL) and a no-op ceiling.

Run with `make bench` or `python -m bench.ingest`. Writes its figures to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from bench.report import write_section
from bench.servers import collector_server, noop_server
from bench.wrk import WrkResult, run_wrk
from collector.adapters.db.engine import create_engine
from collector.adapters.db.tables import ReportRow
from tests.support.postgres import create_database, run_postgres

CONNECTIONS = 32
BIN = Path(sys.executable).parent


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


@contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
        return
    with run_postgres() as server:
        yield create_database(server, "bench")


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


def measure(
    url: str,
    run: str,
    seconds: int,
    workdir: Path,
    delay_ms: int = 0,
    database_url: str | None = None,
) -> WrkResult:
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return run_wrk(
        f"{url}/api/usage/report",
        run=run,
        window=(end - timedelta(hours=1), end),
        seconds=seconds,
        connections=CONNECTIONS,
        workdir=workdir,
        delay_ms=delay_ms,
        token=ingest_token(database_url, run),
    )


def half_load_delay_ms(rps: float) -> int:
    """Per-connection pause that brings CONNECTIONS connections to about half of ``rps``."""
    return max(1, round(CONNECTIONS * 1000 / (rps / 2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=15, help="Length of each wrk run (s).")
    args = parser.parse_args()
    lines = [
        "## Ingest (`bench/ingest.py`)",
        "",
        f"{datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, 2 cores, one uvicorn worker; wrk "
        f"-t1 -c{CONNECTIONS} -d{args.seconds}s on the same machine; every request is a unique "
        "v1 report. Half load paces each connection with wrk's `delay()`. Authentication is on: "
        "every request carries an ingest token (rate limit lifted for the run).",
        "",
        "| target | reports/s | p50 ms | p99 ms | vs no-op | p99 ms at half load | rows ok |",
        "|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        with noop_server() as url:
            ceiling = measure(url, "noop", args.seconds, workdir)
        lines.append(
            f"| no-op Litestar endpoint | {ceiling.rps:.0f} | {ceiling.p50_ms:.1f} | "
            f"{ceiling.p99_ms:.1f} | 1.00 | | |"
        )
        for kind in ("sqlite", "postgresql"):
            with database(kind, workdir) as db_url, collector_server(db_url) as url:
                full = measure(url, f"{kind}-full", args.seconds, workdir, database_url=db_url)
                half = measure(
                    url,
                    f"{kind}-half",
                    args.seconds,
                    workdir,
                    delay_ms=half_load_delay_ms(full.rps),
                    database_url=db_url,
                )
                checks = []
                for run, result in ((f"{kind}-full", full), (f"{kind}-half", half)):
                    rows, distinct = rows_for(db_url, run)
                    accepted = result.requests - result.non_2xx
                    checks.append(rows == distinct and accepted <= rows <= accepted + CONNECTIONS)
                    print(f"{run}: {result}, rows={rows}, distinct={distinct}")
            ok = "yes" if all(checks) and not full.non_2xx and not half.non_2xx else "NO"
            lines.append(
                f"| collector, {kind} | {full.rps:.0f} | {full.p50_ms:.1f} | {full.p99_ms:.1f} | "
                f"{full.rps / ceiling.rps:.2f} | {half.p99_ms:.1f} (at {half.rps:.0f}/s) | {ok} |"
            )
    lines += [
        "",
        "Targets: at least 0.5x the no-op ceiling; p99 at most 100 ms at half load; no lost or "
        "duplicated rows (`rows ok`: every 2xx report is stored, each once).",
    ]
    write_section("ingest", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
