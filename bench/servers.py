"""Start the servers a benchmark measures, as separate processes on loopback ports."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from demo.processes import wait_until_ready
from tests.support.binaries import free_port

BIN = Path(sys.executable).parent
TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Served:
    """A server process a benchmark drives: where it listens, and its pid for CPU accounting."""

    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """User and system CPU of the process and all its threads so far."""
        return cpu_seconds(self.pid)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


@contextmanager
def process(
    argv: list[str],
    ready_url: str,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` until the block ends; its stderr goes to ``log_path`` when given.

    A server that logs every request must write to a file: a pipe nobody reads fills and stops it.
    """
    with ExitStack() as stack:
        stderr = stack.enter_context(log_path.open("ab")) if log_path else subprocess.PIPE
        proc = subprocess.Popen(
            argv, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=stderr
        )
        try:
            wait_until_ready(ready_url, proc)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextmanager
def noop_served() -> Iterator[Served]:
    port = free_port()
    argv = [
        str(BIN / "uvicorn"),
        "bench.noop_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    with process(argv, f"http://127.0.0.1:{port}/api/usage/report") as proc:
        yield Served(f"http://127.0.0.1:{port}", proc.pid)


@contextmanager
def noop_server() -> Iterator[str]:
    with noop_served() as served:
        yield served.url


@contextmanager
def collectors_served(
    database_url: str,
    count: int = 1,
    *,
    log_level: str = "warning",
    log_dir: Path | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[list[Served]]:
    """``count`` collector processes on one database, started one after another.

    With ``log_dir`` each writes its log there (``collector-N.log``), at ``log_level``.
    """
    # Authentication stays on (the bench sends an ingest token); the rate limit is lifted so
    # the figures measure ingest, not the limiter.
    settings = {
        "COLLECTOR_DATABASE_URL": database_url,
        "COLLECTOR_LOG_LEVEL": log_level,
        "COLLECTOR_RATE_LIMIT_RPS": "1000000",
        "COLLECTOR_RATE_LIMIT_BURST": "1000000",
        **(env or {}),
    }
    with ExitStack() as stack:
        served = []
        for n in range(count):
            port = free_port()
            argv = [str(BIN / "usage-collector"), "serve", "--host", "127.0.0.1"]
            argv += ["--port", str(port)]
            log_path = log_dir / f"collector-{n + 1}.log" if log_dir else None
            proc = stack.enter_context(
                process(argv, f"http://127.0.0.1:{port}/health/ready", settings, log_path)
            )
            served.append(Served(f"http://127.0.0.1:{port}", proc.pid))
        yield served


@contextmanager
def collector_server(database_url: str) -> Iterator[str]:
    with collectors_served(database_url) as (served,):
        yield served.url
