"""Run the real collector under uvicorn on a loopback port, in a background thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from sqlalchemy import func, select

from collector.adapters.db.engine import create_engine
from collector.adapters.db.migrate import upgrade
from collector.adapters.db.tables import ReportRow
from collector.api.app import Services, build_services, create_app
from collector.api.header_deadline import http_protocol
from collector.settings import CollectorSettings
from common.clock import Clock
from tests.support.binaries import free_port
from tests.support.credentials import bearer, issue_key, issue_token


@dataclass
class RunningCollector:
    url: str
    settings: CollectorSettings
    services: Services
    app: Any = None
    _secrets: dict[tuple[str, str | None], str] = field(default_factory=dict)

    @property
    def database_url(self) -> str:
        return self.settings.database_url.get_secret_value()

    def ingest_headers(self, customer_id: str) -> dict[str, str]:
        """``Authorization`` for an ingest token of ``customer_id`` (created on first use)."""
        key = ("ingest", customer_id)
        if key not in self._secrets:
            self._secrets[key] = issue_token(self.database_url, customer_id).secret
        return bearer(self._secrets[key])

    def operator_headers(
        self, role: str = "admin", customer_id: str | None = None
    ) -> dict[str, str]:
        """``Authorization`` for an operator key with ``role`` (created on first use)."""
        key = (role, customer_id)
        if key not in self._secrets:
            self._secrets[key] = issue_key(self.database_url, role, customer_id).secret
        return bearer(self._secrets[key])


@contextmanager
def run_collector(
    database_url: str, *, clock: Clock | None = None, **overrides: Any
) -> Iterator[RunningCollector]:
    settings = CollectorSettings(database_url=database_url, **overrides)
    upgrade(settings.async_database_url())
    services = build_services(settings, clock=clock)
    app = create_app(settings, services)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
            http=http_protocol(settings.header_read_timeout),
        )
    )
    thread = threading.Thread(target=server.run, name="collector", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("collector did not start")
        time.sleep(0.01)
    try:
        yield RunningCollector(f"http://127.0.0.1:{port}", settings, services, app)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


async def count_rows_async(database_url: str, table: Any = ReportRow) -> int:
    """Rows in ``table``, read over a connection of its own."""
    engine = create_engine(CollectorSettings(database_url=database_url).async_database_url())
    try:
        async with engine.connect() as conn:
            result = await conn.execute(select(func.count()).select_from(table))
            return int(result.scalar_one())
    finally:
        await engine.dispose()


def count_rows(database_url: str, table: Any = ReportRow) -> int:
    """Rows in ``table``, from synchronous test code (not the server's event loop)."""
    return asyncio.run(count_rows_async(database_url, table))
