"""Operators see leadership: which replica leads, since when and what it runs, in
``GET /api/forwarding/status`` and ``GET /health/ready``; only the leader warns of usage waiting
for a link. On PostgreSQL two replicas elect one through the advisory lock; SQLite's one process
always leads.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from collector.adapters.db.leadership import AdvisoryLeaderLock
from collector.adapters.db.migrate import upgrade_async
from collector.api.app import Services, build_services, create_app
from collector.services.leader import Leadership, LeaderStatus
from collector.settings import CollectorSettings
from collector.telemetry import CollectorMetrics
from common.clock import ManualClock
from tests.support.collector import RunningCollector, run_collector
from tests.support.forwarding import hourly_report

START = datetime(2026, 6, 1, 9, tzinfo=UTC)
CHECK = 1.0
WAIT_LIMIT = 60.0
REPLICA = f"{socket.gethostname()}-{os.getpid()}"


async def elected(leadership: Leadership) -> None:
    """Wait (bounded) until ``leadership``'s running election has had its first result."""
    deadline = time.monotonic() + WAIT_LIMIT
    while leadership.status().since is None:
        assert time.monotonic() < deadline, "the replica never took part in an election"
        await asyncio.sleep(0.01)


def leadership_of(running: RunningCollector) -> dict[str, Any]:
    headers = running.operator_headers("viewer")
    deadline = time.monotonic() + WAIT_LIMIT
    while True:
        answer = httpx.get(f"{running.url}/api/forwarding/status", headers=headers)
        assert answer.status_code == 200, answer.text
        leadership = answer.json()["leadership"]
        if leadership["since"] is not None:
            return dict(leadership)
        assert time.monotonic() < deadline, "the replica never took part in an election"
        time.sleep(0.02)


@pytest.mark.postgres
async def test_two_advisory_locks_on_one_database_elect_one_and_say_which(
    postgres_url: str,
) -> None:
    url = CollectorSettings(database_url=postgres_url).async_database_url()
    clock = ManualClock(START)
    locks = [AdvisoryLeaderLock(url, check=CHECK, name=name) for name in ("r0", "r1")]
    first, second = (
        Leadership(
            lock, CollectorMetrics(CollectorRegistry()), identity=name, check=CHECK, clock=clock
        )
        for lock, name in zip(locks, ("r0", "r1"), strict=True)
    )
    try:
        assert await first.step() is True
        clock.advance(5)
        assert await second.step() is False
        assert first.status() == LeaderStatus("r0", True, START, [])
        assert second.status() == LeaderStatus("r1", False, START + timedelta(seconds=5), [])

        clock.advance(5)
        await locks[0].release()  # as when PostgreSQL ends the leader's session
        assert await first.step() is False
        assert await second.step() is True

        handed_over = START + timedelta(seconds=10)
        assert first.status() == LeaderStatus("r0", False, handed_over, [])
        assert second.status() == LeaderStatus("r1", True, handed_over, [])
    finally:
        for leadership in (first, second):
            await leadership.close()


@pytest.mark.postgres
def test_forwarding_status_and_readiness_show_which_of_two_replicas_leads(
    postgres_url: str,
) -> None:
    clock = ManualClock(START)
    with (
        run_collector(postgres_url, clock=clock, leader_check=CHECK) as one,
        run_collector(postgres_url, clock=clock, leader_check=CHECK) as other,
    ):
        found = [leadership_of(one), leadership_of(other)]
        leaders = [s for s in found if s["leading"]]
        followers = [s for s in found if not s["leading"]]
        assert len(leaders) == 1, found
        assert leaders[0] == {
            "leading": True,
            "since": "2026-06-01T09:00:00Z",
            "tasks": ["ageing"],
            "replica": REPLICA,
        }
        assert followers == [
            {"leading": False, "since": "2026-06-01T09:00:00Z", "tasks": [], "replica": REPLICA}
        ]
        ready = [httpx.get(f"{r.url}/health/ready").json() for r in (one, other)]
        assert sorted(r["leadership"]["leading"] for r in ready) == [False, True]
        assert all("replica" not in r["leadership"] for r in ready)


def test_sqlite_one_process_leads_and_says_so(tmp_path: Path) -> None:
    clock = ManualClock(START)
    with run_collector(f"sqlite+aiosqlite:///{tmp_path / 'usage.db'}", clock=clock) as running:
        assert leadership_of(running) == {
            "leading": True,
            "since": "2026-06-01T09:00:00Z",
            "tasks": ["ageing"],
            "replica": REPLICA,
        }
        ready = httpx.get(f"{running.url}/health/ready")
        assert ready.status_code == 200
        assert ready.json()["leadership"] == {
            "leading": True,
            "since": "2026-06-01T09:00:00Z",
            "tasks": ["ageing"],
        }


@asynccontextmanager
async def electing(postgres_url: str, clock: ManualClock) -> AsyncIterator[list[Services]]:
    """Two replicas' services on one database; the first leads, the second follows."""
    settings = CollectorSettings(database_url=postgres_url, leader_check=CHECK)
    await upgrade_async(settings.async_database_url())
    replicas = [
        build_services(settings, clock=clock, registry=CollectorRegistry()) for _ in range(2)
    ]
    stop = asyncio.Event()
    runs = []
    try:
        for services in replicas:
            runs.append(asyncio.create_task(services.leadership.run(stop)))
            await elected(services.leadership)
        yield replicas
    finally:
        stop.set()
        await asyncio.gather(*runs)
        for services in replicas:
            await services.close()


@pytest.mark.postgres
async def test_usage_waiting_unlinked_is_warned_by_one_replica_of_two(postgres_url: str) -> None:
    clock = ManualClock(START)
    async with electing(postgres_url, clock) as (leader, follower):
        assert [r.leadership.status().leading for r in (leader, follower)] == [True, False]
        clock.set(START + timedelta(hours=1, minutes=1))
        await leader.ingest.store(hourly_report("cust_unlinked", START, 1, mqtt_messages=5))

        with capture_logs() as logs:
            for replica in (leader, follower):
                await replica.queue_gauges.sample()

        warned = [e["customer_id"] for e in logs if e["event"] == "usage_waiting_unlinked"]
        assert warned == ["cust_unlinked"]
        for replica in (leader, follower):
            value = replica.telemetry.registry.get_sample_value
            assert value("usage_collector_customers_unbilled", {"reason": "unlinked"}) == 1


@pytest.mark.postgres
async def test_readiness_without_an_election_running_says_nobody_leads_here(
    postgres_url: str,
) -> None:
    """An app whose election never ran (no lifespan) leads nothing, and readiness says so."""
    settings = CollectorSettings(database_url=postgres_url)
    await upgrade_async(settings.async_database_url())
    services = build_services(settings, clock=ManualClock(START), registry=CollectorRegistry())
    try:
        app = cast(Any, create_app(settings, services))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://c.test") as client:
            answer = await client.get("/health/ready")
        assert answer.status_code == 200
        assert answer.json()["leadership"] == {"leading": False, "since": None, "tasks": []}
    finally:
        await services.close()
