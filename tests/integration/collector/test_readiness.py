"""Issue 12, point 4: readiness says whether the schema is migrated, not only that the database
answers. `serve --no-migrate` on an empty database used to answer /health/ready with 200.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx

from collector.adapters.db.engine import create_engine
from collector.adapters.db.migrate import head_revision, upgrade_async
from collector.api.health import SchemaReadiness
from common.clock import ManualClock
from tests.support.binaries import free_port
from tests.support.collector_process import clean_environment, collector_script

LIMIT_SECONDS = 60.0


@contextmanager
def serving(env: dict[str, str], log: Path, *argv: str) -> Iterator[str]:
    """`usage-collector serve ARGV` as a real process; its URL once /health/live answers."""
    port = free_port()
    with log.open("w") as sink:
        process = subprocess.Popen(
            [collector_script(), "serve", "--port", str(port), *argv],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + LIMIT_SECONDS
            while True:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                try:
                    if httpx.get(f"{url}/health/live").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.05)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)


def ready_within_limit(url: str) -> httpx.Response:
    deadline = time.monotonic() + LIMIT_SECONDS
    while True:
        answer = httpx.get(f"{url}/health/ready")
        if answer.status_code == 200 or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def test_serve_no_migrate_on_an_empty_database_is_not_ready_until_db_upgrade(
    database_url: str, tmp_path: Path
) -> None:
    env = clean_environment(COLLECTOR_DATABASE_URL=database_url)
    with serving(env, tmp_path / "serve.log", "--no-migrate") as url:
        answer = httpx.get(f"{url}/health/ready")
        assert answer.status_code == 503
        assert answer.json()["status"] == "unavailable"
        assert answer.json()["checks"]["database"] == "ok"
        assert "run usage-collector db upgrade" in answer.json()["checks"]["schema"]
        assert httpx.get(f"{url}/health/live").status_code == 200

        upgraded = subprocess.run(
            [collector_script(), "db", "upgrade"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert upgraded.returncode == 0, upgraded.stderr

        answer = ready_within_limit(url)
        assert answer.status_code == 200, answer.text
        assert answer.json()["checks"] == {"database": "ok", "schema": f"at head {head_revision()}"}
    assert "database not migrated" in (tmp_path / "serve.log").read_text()


async def test_the_schema_check_is_remembered_for_its_ttl(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'usage.db'}"
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    engine = create_engine(url)
    try:
        readiness = SchemaReadiness(engine, clock, ttl=5.0)
        assert not (await readiness.state()).migrated
        await upgrade_async(url)
        clock.advance(4.9)
        assert not (await readiness.state()).migrated
        clock.advance(0.1)
        state = await readiness.state()
        assert state.migrated
        assert state.current == head_revision()
    finally:
        await engine.dispose()
