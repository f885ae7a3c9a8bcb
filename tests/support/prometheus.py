"""A throwaway real Prometheus on loopback, filled with history by promtool backfill."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.binaries import free_port, require_binary

READY_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Series:
    """One series of a family: its labels and ``(unix seconds, value)`` samples, oldest first."""

    labels: Mapping[str, str]
    samples: Sequence[tuple[float, float]]


@dataclass(frozen=True)
class Family:
    """A metric family. For a counter ``name`` is the base name; samples get ``_total``."""

    name: str
    kind: str
    series: Sequence[Series] = field(default_factory=list)

    @property
    def sample_name(self) -> str:
        return f"{self.name}_total" if self.kind == "counter" else self.name


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    escaped = (
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in sorted(labels.items())
    )
    return "{" + ",".join(escaped) + "}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def openmetrics_text(families: Iterable[Family]) -> str:
    """OpenMetrics text for promtool, terminated by the mandatory ``# EOF``."""
    lines: list[str] = []
    for family in families:
        lines.append(f"# TYPE {family.name} {family.kind}")
        for series in family.series:
            for timestamp, value in series.samples:
                lines.append(
                    f"{family.sample_name}{_labels(series.labels)} {_number(value)} "
                    f"{_number(timestamp)}"
                )
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


@dataclass
class PrometheusServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def backfill(openmetrics: str, workdir: Path) -> Path:
    """Write the text and turn it into TSDB blocks with ``promtool``; returns the TSDB dir."""
    promtool = require_binary("promtool", "Prometheus (promtool)")
    if not openmetrics.rstrip().endswith("# EOF"):
        raise ValueError("OpenMetrics text must end with '# EOF'")
    source = workdir / "backfill.om"
    source.write_text(openmetrics, encoding="utf-8")
    tsdb = workdir / "tsdb"
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(tsdb)],
        check=True,
        capture_output=True,
    )
    return tsdb


def _wait_ready(server: PrometheusServer) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        try:
            if httpx.get(f"{server.url}/-/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    log = server.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
    raise RuntimeError(f"Prometheus did not become ready at {server.url}:\n{log}")


@contextmanager
def running_prometheus(workdir: Path, openmetrics: str | None = None) -> Iterator[PrometheusServer]:
    """A Prometheus with ``openmetrics`` backfilled (or empty), stopped when the block exits."""
    binary = require_binary("prometheus", "Prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    tsdb = backfill(openmetrics, workdir) if openmetrics else workdir / "tsdb"
    config = workdir / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\nscrape_configs: []\n", encoding="utf-8")
    port = free_port()
    log_path = workdir / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tsdb}",
                "--storage.tsdb.retention.time=100y",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = PrometheusServer(f"http://127.0.0.1:{port}", process, log_path)
    _wait_ready(server)
    try:
        yield server
    finally:
        server.stop()
