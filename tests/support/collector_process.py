"""The collector as a real operating-system process: `usage-collector serve`, killed at will.

Every command (`serve`, `stripe setup`, `tokens create`, ...) runs the installed console script
with one environment, so the CLI and the server read exactly the same settings.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import httpx

from tests.support.binaries import free_port

START_LIMIT_SECONDS = 30.0


def collector_script() -> str:
    """The `usage-collector` console script of the interpreter running the tests."""
    return str(Path(sys.executable).parent / "usage-collector")


def clean_environment(**settings: str) -> dict[str, str]:
    """The test process's environment without any COLLECTOR_* variable, plus ``settings``."""
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("COLLECTOR_")}
    return base | settings


SETTLE = 0.3
"""Seconds a frozen process's last requests take to reach a peer on loopback, with room."""


class CollectorProcess:
    """`usage-collector serve` on a fixed loopback port; start, SIGKILL and restart it."""

    def __init__(self, environment: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.environment = environment | {
            "COLLECTOR_HOST": "127.0.0.1",
            "COLLECTOR_PORT": str(self.port),
        }
        self._log_path = log_path
        self._log: IO[str] | None = None
        self._process: subprocess.Popen[str] | None = None
        self.starts = 0
        self.kills = 0

    @property
    def running(self) -> bool:
        """Started and neither killed nor stopped since."""
        return self._process is not None

    @property
    def pid(self) -> int:
        assert self._process is not None, "not running"
        return self._process.pid

    def run_cli(self, *args: str, timeout: float = 60.0) -> str:
        """Run ``usage-collector ARGS`` with the same settings; its stdout, or fail the test."""
        result = subprocess.run(
            [collector_script(), *args],
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"usage-collector {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result.stdout

    def start(self) -> None:
        """Start `serve` and return once /health/live answers (bounded)."""
        assert self._process is None, "already running"
        self._log = self._log_path.open("a")
        self._log.write(f"--- start {self.starts + 1} ---\n")
        self._log.flush()
        self._process = subprocess.Popen(
            [collector_script(), "serve"],
            env=self.environment,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.starts += 1
        deadline = time.monotonic() + START_LIMIT_SECONDS
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    raise AssertionError(f"collector exited at start-up:\n{self.log_text()}")
                try:
                    if client.get(f"{self.url}/health/live").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        raise AssertionError(f"collector did not answer within the limit:\n{self.log_text()}")

    def kill_settled(self, settle: float = SETTLE) -> float:
        """SIGSTOP, ``settle`` seconds, then SIGKILL; returns the kill's ``time.monotonic()``.

        Frozen, it sends nothing more and keeps its connections and leases. A request it made
        just before may reach its peer a moment later: after the wait, whatever a peer logs
        after the returned time came from another process.
        """
        assert self._process is not None, "not running"
        self._process.send_signal(signal.SIGSTOP)
        time.sleep(settle)
        killed_at = time.monotonic()
        self.kill()
        return killed_at

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, in-flight Stripe calls are abandoned mid-way."""
        assert self._process is not None, "not running"
        self._process.send_signal(signal.SIGKILL)
        self._process.wait(timeout=30)
        assert self._process.returncode == -signal.SIGKILL
        self._process = None
        self.kills += 1
        self._close_log()

    def stop(self) -> None:
        """SIGTERM and wait (a graceful stop), killing it if it does not stop."""
        if self._process is None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        self._process = None
        self._close_log()

    def log_text(self) -> str:
        return self._log_path.read_text() if self._log_path.exists() else ""

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> CollectorProcess:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
