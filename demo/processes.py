"""Start the demo's servers as real processes and wait until they answer."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


class Processes:
    """Child processes that are stopped (SIGTERM, then SIGKILL) when the demo ends."""

    def __init__(self, logs: Path) -> None:
        self._logs = logs
        self._children: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self._logs / f"{name}.log").open("wb")
        child = subprocess.Popen(
            [str(BIN / argv[0]), *argv[1:]],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self._children.append(child)
        return child

    def stop(self, child: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        return child.returncode

    def stop_all(self) -> None:
        for child in reversed(self._children):
            self.stop(child)
