"""Drive an endpoint with wrk and unique usage reports, and parse what wrk prints."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

LUA = """
local counter = 0
local thread_id = 0
local delay_ms = %(delay_ms)d
function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
end
function init(args)
  tid = tid or 0
end
-- An exponential pause with mean delay_ms: a fixed one keeps the connections in step, and they
-- arrive in bursts of all of them at once, which measures the burst, not the load.
function delay()
  if delay_ms == 0 then
    return 0
  end
  return math.floor(-delay_ms * math.log(1 - math.random()))
end
function request()
  counter = counter + 1
  local body = '{"schema_version":1,"customer_id":"bench-%(run)s-' .. tid ..
    '","instance_id":"i-' .. counter ..
    '","window_start":"%(start)s","window_end":"%(end)s",' ..
    '"metrics":{"devices":3,"mqtt_messages":1000,"storage_gb":1.5},' ..
    '"active_devices":3,"total_devices":5,"agent_version":"bench"}'
  return wrk.format("POST", "/api/usage/report",
    {["Content-Type"]="application/json"%(auth)s}, body)
end
"""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    errors: int


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse(output: str) -> WrkResult:
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return WrkResult(
        requests=requests,
        rps=rps,
        p50_ms=p50,
        p99_ms=p99,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        errors=sum(int(g) for g in errors.groups()) if errors else 0,
    )


def run_wrk(
    url: str,
    *,
    run: str,
    window: tuple[datetime, datetime],
    seconds: int,
    connections: int,
    workdir: Path,
    delay_ms: int = 0,
    token: str | None = None,
) -> WrkResult:
    """Drive ``url``; with ``token`` every request carries it as a bearer credential."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed: run `make bench`, which installs it")
    script = workdir / f"{run}.lua"
    script.write_text(
        LUA
        % {
            "run": run,
            "start": window[0].isoformat(),
            "end": window[1].isoformat(),
            "delay_ms": delay_ms,
            "auth": f', ["Authorization"]="Bearer {token}"' if token else "",
        }
    )
    completed = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    )
    return parse(completed.stdout)
