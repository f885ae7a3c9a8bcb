"""Agent benchmark: RSS and CPU per cycle with 10,000 paged devices, and a 7-day catch-up.

``python -m bench.agent`` starts a real Prometheus backfilled (promtool) with 8 days of a
4-series MQTT counter and a storage gauge, the simulator serving 10,000 devices in pages of 500,
and a collector stub answering 201. The agent runs in a child process of its own (so the
figures are the agent's alone) on a manual clock with the default queries:

1. one window, then five more cycles: CPU time (user + system, all threads) of each cycle and
   the peak RSS of the process;
2. a restart after 7 days of downtime: wall time to collect and send 168 hourly windows.

The figures go to the agent section of docs/benchmarks.md. Not a test: nothing is asserted.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.report import write_section

HOUR = timedelta(hours=1)
DEVICES = 10_000
PAGE = 500
CATCHUP_WINDOWS = 168
TARGETS = "RSS at most 64 MB; one cycle within 1 s of CPU; 168-window catch-up within 30 s"


def _history(t0: datetime) -> str:
    from tests.support.prometheus import Family, Series, openmetrics_text

    counters = []
    for broker in range(4):
        samples = []
        value = 0
        moment = t0 - HOUR
        while moment <= t0 + (CATCHUP_WINDOWS + 8) * HOUR:
            value = 0 if moment.hour == 3 and moment.minute == 0 else value + 17 + broker
            samples.append((moment.timestamp(), float(value)))
            moment += timedelta(seconds=60)
        counters.append(Series({"broker": f"b{broker}"}, samples))
    storage = []
    moment = t0 - HOUR
    while moment <= t0 + (CATCHUP_WINDOWS + 8) * HOUR:
        storage.append((moment.timestamp(), float(5e9 + (moment.minute * 1e6))))
        moment += timedelta(seconds=60)
    return openmetrics_text(
        [
            Family("mqtt_messages_received", "counter", counters),
            Family("kubelet_volume_stats_used_bytes", "gauge", [Series({"pvc": "d"}, storage)]),
        ]
    )


class _Stub:
    """A collector answering 201 to every report."""

    def __init__(self) -> None:
        self.count = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                stub.count += 1
                body = b'{"message": "ok"}'
                self.send_response(201)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _child(config: dict[str, Any]) -> dict[str, Any]:
    from prometheus_client import CollectorRegistry

    from agent.cli.wiring import build_runtime
    from agent.settings import load_settings
    from common.clock import ManualClock
    from common.logs import configure_logging

    configure_logging("error")
    t0 = datetime.fromisoformat(config["t0"])
    settings = load_settings(
        customer_id="bench",
        instance_id="bench",
        collector_url=config["collector"],
        prometheus_url=config["prometheus"],
        device_api_url=config["devices"],
        state_dir=Path(config["state"]),
        interval="1h",
        jitter="0s",
    )
    clock = ManualClock(t0 + HOUR + timedelta(minutes=1))
    runtime = await build_runtime(settings, clock, registry=CollectorRegistry())
    cycles = []
    try:
        await runtime.loop.run_once(attempts=1)
        for _ in range(5):
            clock.advance(HOUR)
            before = time.process_time()
            await runtime.loop.cycle()
            cycles.append(time.process_time() - before)
        rss = _peak_rss_mb()
        clock.advance(CATCHUP_WINDOWS * HOUR)
        started = time.perf_counter()
        await runtime.loop.cycle()
        catchup = time.perf_counter() - started
        left = runtime.loop.delivery.spool.depth()
    finally:
        await runtime.aclose()
    return {"cycles": cycles, "rss_mb": rss, "catchup_s": catchup, "left": left}


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(asyncio.run(_child(json.loads(sys.argv[2])))))
        return
    from demo.simulator import Simulator
    from tests.support.prometheus import running_prometheus

    t0 = (datetime.now(UTC) - timedelta(days=8)).replace(minute=0, second=0, microsecond=0)
    stub = _Stub()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with (
            running_prometheus(work / "prometheus", _history(t0)) as prometheus,
            Simulator(devices=DEVICES, active=DEVICES * 7 // 10, page_size=PAGE) as simulator,
        ):
            config = {
                "t0": t0.isoformat(),
                "collector": stub.url,
                "prometheus": prometheus.url,
                "devices": f"{simulator.url}/api/devices",
                "state": str(work / "state"),
            }
            env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_")}
            out = subprocess.run(
                [sys.executable, "-m", "bench.agent", "--child", json.dumps(config)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    cycles = result["cycles"]
    text = "\n".join(
        [
            "## Agent (`bench/agent.py`)",
            "",
            f"{datetime.now(UTC).date()}, {platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}. The agent runs alone in a child process on "
            "a manual clock with the default queries against a real Prometheus (4 counter "
            f"series and a storage gauge), the simulator's {DEVICES:,} devices in pages of "
            f"{PAGE}, and a collector stub.",
            "",
            "| measure | value | target |",
            "|---|---|---|",
            f"| peak RSS after 6 cycles | {result['rss_mb']:.1f} MB | ≤ 64 MB |",
            f"| CPU per cycle (median of 5) | {sorted(cycles)[2]:.3f} s | ≤ 1 s |",
            f"| CPU per cycle (max of 5) | {max(cycles):.3f} s | ≤ 1 s |",
            f"| catch-up of {CATCHUP_WINDOWS} hourly windows (collect + spool + send) | "
            f"{result['catchup_s']:.1f} s | ≤ 30 s |",
            "",
            f"Targets: {TARGETS}. Reports left unsent after the catch-up: {result['left']}.",
        ]
    )
    write_section("agent", text)
    print(text)


if __name__ == "__main__":
    main()
