"""The outbox's indexes on real databases: the migrations build what the models declare, the
uniqueness that keeps a report's usage from being queued twice holds, and the period queries can
use the partial period index."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event, insert, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from collector.adapters.db.corrections import marker, newest_forwards
from collector.adapters.db.engine import create_engine
from collector.adapters.db.formation import billed_context
from collector.adapters.db.migrate import upgrade_async
from collector.adapters.db.outbox import OutboxStore
from collector.adapters.db.tables import FORWARDS, Base

END = datetime(2026, 6, 1, 12, tzinfo=UTC)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    await upgrade_async(database_url)
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


def _forward(report_pk: int, report_id: uuid.UUID, metric: str, **changes: Any) -> dict[str, Any]:
    return {
        "report_pk": report_pk,
        "report_id": report_id,
        "customer_id": "c1",
        "instance_id": "i1",
        "metric": metric,
        "kind": "report",
        "window_start": END - timedelta(hours=1),
        "window_end": END,
        "value": "1",
        "state": "pending",
        "batch_id": None,
        "period_id": None,
        "generation": 0,
        "created_at": END,
        **changes,
    }


async def test_the_migrations_build_the_schema_the_models_declare(engine: AsyncEngine) -> None:
    def differences(sync_conn: Any) -> list[Any]:
        context = MigrationContext.configure(sync_conn, opts={"compare_type": False})
        found = compare_metadata(context, Base.metadata)
        # The shared rate limit's tables are written by its own statements and have no model.
        unmodelled = {"rate_buckets", "rate_slots"}
        return [d for d in found if d[0] != "remove_table" or d[1].name not in unmodelled]

    async with engine.connect() as conn:
        assert await conn.run_sync(differences) == []
        indexes = await _index_definitions(conn)
    assert "period_id IS NOT NULL" in indexes["ix_forwards_period"]
    assert "(report_pk, report_id, metric)" in indexes["uq_forwards_report_metric"]


async def _index_definitions(conn: AsyncConnection) -> dict[str, str]:
    if conn.dialect.name == "sqlite":
        query = (
            "SELECT name, sql FROM sqlite_master WHERE tbl_name = 'forwards' AND sql IS NOT NULL"
        )
    else:
        query = "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'forwards'"
    rows = (await conn.execute(text(query))).all()
    return {name: " ".join(sql.replace('"', "").split()) for name, sql in rows}


async def test_a_report_metric_is_queued_once_and_markers_stay_unique_by_id(
    engine: AsyncEngine,
) -> None:
    report_id = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(insert(FORWARDS), [_forward(7, report_id, "devices")])
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(insert(FORWARDS), [_forward(7, report_id, "devices")])

    def carried(tag: str) -> dict[str, Any]:
        return marker("c1", "i1", "devices", "carry", tag, END, END, "3", END)

    async with engine.begin() as conn:
        await conn.execute(insert(FORWARDS), [carried("1"), carried("2")])
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(insert(FORWARDS), [carried("1")])
    async with engine.connect() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM forwards"))).scalar_one()
    assert count == 3


async def test_the_period_queries_can_use_the_period_index(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            insert(FORWARDS),
            [
                _forward(n, uuid.uuid4(), "devices", period_id=n % 3 or None, state="sent")
                for n in range(1, 30)
            ],
        )
    statements: list[tuple[str, Any]] = []

    def seen(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM forwards" in statement and not statement.startswith("EXPLAIN"):
            statements.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        async with engine.connect() as conn:
            await billed_context(conn, [(1, "devices", "set", END, END)])
            await billed_context(conn, [(1, "devices", "max", END - timedelta(hours=2), END)])
            await newest_forwards(conn, "c1", ["devices"], period_id=1)
        await OutboxStore(engine).billed_in(1)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", seen)
    assert len(statements) == 4
    async with engine.connect() as conn:
        for statement, parameters in statements:
            plan = await _plan(conn, statement, parameters)
            assert "ix_forwards_period" in plan, (statement, plan)


async def _plan(conn: AsyncConnection, statement: str, parameters: Any) -> str:
    driver = await conn.get_raw_connection()
    if conn.dialect.name == "sqlite":
        # Without statistics SQLite picks among usable indexes by rule; naming the index shows
        # whether it can serve (SQLite refuses a query the named index cannot).
        forced = statement.replace("FROM forwards", "FROM forwards INDEXED BY ix_forwards_period")
        cursor = await driver.driver_connection.execute(f"EXPLAIN QUERY PLAN {forced}", parameters)
        return " ".join(str(row) for row in await cursor.fetchall())
    # With next to no rows a scan is cheapest; forbidding it shows whether the index can serve.
    await driver.driver_connection.execute("SET enable_seqscan = off")
    try:
        rows = await driver.driver_connection.fetch(f"EXPLAIN {statement}", *parameters)
    finally:
        await driver.driver_connection.execute("RESET enable_seqscan")
    return " ".join(row[0] for row in rows)
