"""Start the servers a benchmark measures, as separate processes on loopback ports."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from demo.processes import wait_until_ready
from tests.support.binaries import free_port

BIN = Path(sys.executable).parent


@contextmanager
def process(argv: list[str], ready_url: str, env: dict[str, str] | None = None) -> Iterator[None]:
    proc = subprocess.Popen(
        argv, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_until_ready(ready_url, proc)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def noop_server() -> Iterator[str]:
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
    with process(argv, f"http://127.0.0.1:{port}/api/usage/report"):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def collector_server(database_url: str) -> Iterator[str]:
    port = free_port()
    argv = [str(BIN / "usage-collector"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    # Authentication stays on (the bench sends an ingest token); the rate limit is lifted so
    # the figures measure ingest, not the limiter.
    env = {
        "COLLECTOR_DATABASE_URL": database_url,
        "COLLECTOR_LOG_LEVEL": "warning",
        "COLLECTOR_RATE_LIMIT_RPS": "1000000",
        "COLLECTOR_RATE_LIMIT_BURST": "1000000",
    }
    with process(argv, f"http://127.0.0.1:{port}/health/ready", env):
        yield f"http://127.0.0.1:{port}"
