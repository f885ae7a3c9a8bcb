"""The forwarding benchmarks' world: a collector and the Stripe sandbox as real processes, the
reports they forward, and what the sandbox's call log says."""

from __future__ import annotations

import asyncio
import bisect
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from demo.processes import wait_until_ready
from tests.support.binaries import free_port
from tests.support.collector_process import CollectorProcess, clean_environment, collector_script
from tests.support.credentials import issue_key, issue_token
from tests.support.stripe_sandbox import API_KEY, SandboxControl, stripe_client

PRICE_KEYS = ("device_usage", "mqtt_messages", "storage_gb")


@dataclass
class World:
    sandbox: SandboxControl
    sandbox_url: str
    collector: CollectorProcess
    database_url: str
    tokens: dict[str, str]


@contextmanager
def sandbox_process() -> Iterator[tuple[str, SandboxControl]]:
    port = free_port()
    argv = [collector_script(), "stripe", "sandbox", "--port", str(port)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(f"{url}/_sandbox/health", proc)
        control = SandboxControl(url)
        yield url, control
        control.close()
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@contextmanager
def world(
    workdir: Path, mode: str, customers: int, database_url: str | None = None, **settings: str
) -> Iterator[World]:
    """A fresh sandbox and database (SQLite unless given); customers subscribed and linked."""
    database_url = (
        database_url or f"sqlite+aiosqlite:///{workdir / f'fwd-{time.monotonic_ns()}.db'}"
    )
    with sandbox_process() as (url, control):
        environment = clean_environment(
            **{
                "COLLECTOR_DATABASE_URL": database_url,
                "COLLECTOR_STRIPE_API_KEY": API_KEY,
                "COLLECTOR_STRIPE_API_BASE": url,
                "COLLECTOR_STRIPE_MODE": mode,
                "COLLECTOR_LOG_LEVEL": "warning",
                "COLLECTOR_RATE_LIMIT_RPS": "1000000",
                "COLLECTOR_RATE_LIMIT_BURST": "1000000",
                # Its reads have a limit of their own; the figures are the forwarder's alone.
                "COLLECTOR_RECONCILE_INTERVAL": "off",
                **settings,
            }
        )
        collector = CollectorProcess(environment, workdir / "collector.log")
        collector.start()
        legacy = ["--legacy"] if mode == "usage_records" else []
        output = collector.run_cli("stripe", "setup", *legacy)
        prices = {
            p[2]: p[1] for p in (line.split() for line in output.splitlines()) if p[:1] == ["price"]
        }
        client = stripe_client(url)
        editor = issue_key(database_url, "editor").secret
        control.set_clock(int(time.time()) - 2 * 86400)
        tokens: dict[str, str] = {}
        with httpx.Client(base_url=collector.url, timeout=30) as http:
            for n in range(customers):
                customer_id = f"bench-{n}"
                customer = client.v1.customers.create({"metadata": {"customer_id": customer_id}})
                if mode == "usage_records":
                    items = [{"price": prices[key]} for key in PRICE_KEYS]
                    client.v1.subscriptions.create({"customer": customer.id, "items": items})
                http.post(
                    f"/api/forwarding/customers/{customer_id}/link",
                    json={"stripe_customer_id": customer.id},
                    headers={"authorization": f"Bearer {editor}"},
                ).raise_for_status()
                tokens[customer_id] = issue_token(database_url, customer_id).secret
        control.set_clock(int(time.time()))
        try:
            yield World(control, url, collector, database_url, tokens)
        finally:
            collector.stop()


def report(customer_id: str, k: int, base: datetime, seed: int) -> dict[str, Any]:
    """Window ``k`` of a customer: one minute, in the past, every value changing."""
    start = base + timedelta(minutes=k)
    return {
        "customer_id": customer_id,
        "instance_id": "cluster",
        "window_start": start.isoformat(),
        "window_end": (start + timedelta(minutes=1)).isoformat(),
        "metrics": {
            "mqtt_messages": 100 + (k * 7 + seed) % 900,
            "devices": 1 + (k + seed) % 50,
            "storage_gb": ((k * 13 + seed) % 400) / 10,
        },
    }


async def post_all(w: World, bodies: list[dict[str, Any]], rate: float | None) -> None:
    """POST every body; at ``rate``/s on a fixed schedule, or as fast as 32 connections go."""
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=w.collector.url, timeout=30, limits=limits) as http:
        gate = asyncio.Semaphore(32)

        async def post(body: dict[str, Any], at: float | None) -> None:
            if at is not None:
                await asyncio.sleep(max(0.0, at - time.monotonic()))
            async with gate:
                token = w.tokens[body["customer_id"]]
                answer = await http.post(
                    "/api/usage/report", json=body, headers={"authorization": f"Bearer {token}"}
                )
                answer.raise_for_status()

        start = time.monotonic() + 0.2
        await asyncio.gather(
            *(post(b, start + i / rate if rate else None) for i, b in enumerate(bodies))
        )


def settle(w: World, limit: float = 600.0, url: str | None = None) -> None:
    key = issue_key(w.database_url, "viewer").secret
    deadline = time.monotonic() + limit
    with httpx.Client(base_url=url or w.collector.url, timeout=30) as http:
        while time.monotonic() < deadline:
            status = http.get(
                "/api/forwarding/status", headers={"authorization": f"Bearer {key}"}
            ).json()
            if not {"pending", "batched"} & set(status["forwards"]) and not status["batches"].get(
                "pending"
            ):
                assert "dead" not in status["batches"], status
                return
            time.sleep(0.2)
    raise RuntimeError(f"forwarding did not settle: {status}")


def busiest_second(times: list[float]) -> int:
    """Most calls in any one-second window [t, t + 1) of the call log."""
    times = sorted(times)
    return max((bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times)), default=0)


def clear_calls(w: World) -> None:
    httpx.delete(f"{w.sandbox_url}/_sandbox/calls", timeout=30).raise_for_status()


def stripe_calls(w: World) -> list[dict[str, Any]]:
    return [c for c in w.sandbox.calls() if c["path"].startswith(("/v1/", "/v2/"))]


def accepted_events(w: World, mode: str) -> int:
    return len(w.sandbox.usage_records() if mode == "usage_records" else w.sandbox.meter_events())


LOADS: list[float] = []
"""The one-minute load average at the start of each run: other work on the machine."""


def load_note() -> str:
    if not LOADS:
        return ""
    return (
        f" One-minute load average at the start of each run: {min(LOADS):.1f} to "
        f"{max(LOADS):.1f} (other work shared the machine)."
    )


def sample_load() -> None:
    LOADS.append(os.getloadavg()[0])
