"""Which batches a collector process holds leases on, read from its log and its database."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from collector.adapters.db.engine import create_engine
from tests.support.collector_process import CollectorProcess

_LEASED = text(
    "SELECT identifier, extract(epoch FROM lease_until - clock_timestamp()) AS left_s "
    "FROM forward_batches WHERE state = 'pending' AND lease_owner = :owner "
    "AND lease_until > clock_timestamp()"
)
_STATES = text("SELECT identifier, state FROM forward_batches WHERE identifier = ANY(:ids)")


@dataclass(frozen=True)
class Leased:
    """A batch an owner holds: its identifier, and when its lease lapses (monotonic seconds)."""

    identifier: str
    lapses_at: float


def log_events(process: CollectorProcess, event: str) -> Iterator[dict[str, Any]]:
    """The JSON log lines of ``event`` in the process's log, oldest first."""
    for line in process.log_text().splitlines():
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == event:
            yield entry


def forwarder_owner(process: CollectorProcess) -> str:
    """The lease owner name of the process's current forwarder (needs INFO logging)."""
    return str(list(log_events(process, "forwarder started"))[-1]["owner"])


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def leased_by(database_url: str, owner: str) -> list[Leased]:
    """The batches ``owner`` holds a live lease on (PostgreSQL), with when each lapses."""

    async def read() -> list[Leased]:
        engine = create_engine(database_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                rows = (await conn.execute(_LEASED, {"owner": owner})).all()
                now = time.monotonic()
                return [Leased(r.identifier, now + float(r.left_s)) for r in rows]
        finally:
            await engine.dispose()

    result: list[Leased] = _run(read())
    return result


def batch_states(database_url: str, identifiers: list[str]) -> dict[str, str]:
    """The state of each batch by identifier (PostgreSQL)."""

    async def read() -> dict[str, str]:
        engine = create_engine(database_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                rows = (await conn.execute(_STATES, {"ids": identifiers})).all()
                return {r.identifier: r.state for r in rows}
        finally:
            await engine.dispose()

    result: dict[str, str] = _run(read())
    return result
