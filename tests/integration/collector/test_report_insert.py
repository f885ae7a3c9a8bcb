"""The driver-level ingest inserts store exactly what SQLAlchemy's typed inserts stored (issue 14).

Each generated row is inserted both ways into the same table, on SQLite and on PostgreSQL;
the database must hold the same values either way, and the typed reads give the row back.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Integer, LargeBinary, MetaData, Table, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from collector.adapters.db.engine import create_engine
from collector.adapters.db.migrate import upgrade_async
from collector.adapters.db.report_insert import (
    ASYNCPG_CACHEABLE_TEXT,
    COLUMNS,
    DriverInsert,
    ReportAndOutboxInsert,
    ReportInsert,
    SqliteReportAndOutbox,
)
from collector.adapters.db.tables import FORWARDS, REPORTS
from collector.settings import CollectorSettings
from tests.support.outbox_reference import forward_rows as outbox_rows

SERIAL = itertools.count()
WITH_A_DATABASE = settings(
    max_examples=15,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
"""Few examples: each one migrates and writes a real database."""
times = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2099, 12, 31),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=9))]),
)
json_numbers = st.one_of(st.integers(0, 10**12), st.floats(0, 1e12, allow_nan=False))
# Text PostgreSQL can hold (no NUL, no lone surrogate); the ingest path refuses the rest alike.
letters = st.characters(exclude_categories=["Cs", "Cc"])
names = st.text(letters, max_size=10)
metric_names = st.text(
    st.characters(exclude_categories=["Cs", "Cc"], exclude_characters='"'), max_size=10
)
"""Any text SQLite's JSON paths can spell: catalogue names are far narrower."""


@st.composite
def rows(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "report_id": draw(st.uuids()),
        "customer_id": draw(st.text(letters, max_size=20)),
        "instance_id": f"i-{next(SERIAL)}",
        "window_start": draw(times),
        "window_end": draw(times),
        "schema_version": 1,
        "legacy": draw(st.booleans()),
        "metrics": draw(st.dictionaries(metric_names, json_numbers, max_size=4)),
        "active_devices": draw(st.none() | st.integers(0, 10**9)),
        "total_devices": draw(st.none() | st.integers(0, 10**9)),
        "partial": draw(st.booleans()),
        "missing": draw(st.lists(names, max_size=3)),
        "unmeasured": draw(st.lists(names, max_size=3)),
        "coverage": draw(
            st.dictionaries(
                names,
                st.fixed_dictionaries({"samples": st.integers(0, 9), "method": st.just("raw")}),
                max_size=2,
            )
        ),
        "agent_version": draw(st.none() | st.text(letters, max_size=8)),
        "fingerprint": draw(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)),
        "created_at": draw(times),
    }


def plain_row() -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "report_id": uuid.uuid4(),
        "customer_id": "cust_1",
        "instance_id": f"i-{next(SERIAL)}",
        "window_start": now - timedelta(hours=1),
        "window_end": now,
        "schema_version": 1,
        "legacy": False,
        "metrics": {"devices": 3},
        "active_devices": 3,
        "total_devices": 4,
        "partial": False,
        "missing": [],
        "unmeasured": [],
        "coverage": {},
        "agent_version": None,
        "fingerprint": "0" * 64,
        "created_at": now,
    }


async def stored(conn: AsyncConnection) -> tuple[Any, ...]:
    """The row as the database holds it, every column but the serial id, untyped."""
    columns = ", ".join(COLUMNS)
    result = await conn.exec_driver_sql(f"SELECT {columns} FROM usage_reports")
    (row,) = result.all()
    return tuple(row)


async def compare(database_url: str, batch: list[dict[str, Any]]) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(delete(REPORTS))
        for row in batch:
            async with engine.begin() as conn:
                await conn.execute(REPORTS.insert(), [row])
                typed = await stored(conn)
                await conn.execute(delete(REPORTS))
                sql = ReportInsert(conn.dialect.name, conn.dialect.paramstyle)
                result = await conn.exec_driver_sql(sql.statement(1), sql.parameters([row]))
                ((pk, returned),) = result.all()
                assert sql.returned_id(returned) == row["report_id"]
                assert await stored(conn) == typed
                read = (await conn.execute(select(REPORTS))).one()._mapping
                for name in COLUMNS:
                    expected = row[name]
                    if isinstance(expected, datetime):
                        expected = expected.astimezone(UTC)
                    assert read[name] == expected, name
                assert read["id"] == pk
                await conn.execute(delete(REPORTS))
    finally:
        await engine.dispose()


@WITH_A_DATABASE
@given(batch=st.lists(rows(), min_size=1, max_size=3))
def test_the_driver_insert_stores_what_the_typed_insert_stored(
    database_url: str, batch: list[dict[str, Any]]
) -> None:
    asyncio.run(upgrade_async(CollectorSettings(database_url=database_url).async_database_url()))
    asyncio.run(compare(database_url, batch))


def test_one_statement_holds_a_whole_batch_and_skips_stored_ids(database_url: str) -> None:
    async def run() -> None:
        url = CollectorSettings(database_url=database_url).async_database_url()
        await upgrade_async(url)
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                sql = ReportInsert(conn.dialect.name, conn.dialect.paramstyle)
                batch = [plain_row() for _ in range(3)]
                first = await conn.exec_driver_sql(sql.statement(2), sql.parameters(batch[:2]))
                assert len(first.all()) == 2
                again = await conn.exec_driver_sql(sql.statement(3), sql.parameters(batch))
                assert [sql.returned_id(r[1]) for r in again.all()] == [batch[2]["report_id"]]
        finally:
            await engine.dispose()

    asyncio.run(run())


def test_a_table_with_a_type_the_driver_insert_does_not_know_is_refused() -> None:
    odd = Table(
        "odd", MetaData(), Column("id", Integer, primary_key=True), Column("b", LargeBinary)
    )
    with pytest.raises(ValueError, match="LargeBinary"):
        DriverInsert(odd, "sqlite", "qmark")


async def _contents(conn: AsyncConnection) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Reports and outbox rows as stored, keys left out (an outbox row names its report's id)."""
    reports = await conn.exec_driver_sql(
        f"SELECT {', '.join(COLUMNS)} FROM usage_reports ORDER BY report_id"
    )
    forward_columns = ", ".join(
        f"f.{c.name}" for c in FORWARDS.columns if c.name not in ("id", "report_pk")
    )
    forwards = await conn.exec_driver_sql(
        f"SELECT r.report_id, {forward_columns} FROM forwards f "
        "JOIN usage_reports r ON r.id = f.report_pk ORDER BY f.report_id, f.metric"
    )
    return [tuple(r) for r in reports.all()], [tuple(r) for r in forwards.all()]


async def _derived(
    conn: AsyncConnection, batch: list[dict[str, Any]], now: datetime, one: ReportAndOutboxInsert
) -> dict[uuid.UUID, int]:
    """The writer's statements: the outbox rows derived from the new reports' rows."""
    if conn.dialect.name == "postgresql":
        statement, parameters = one.build(batch, now)
        result = await conn.exec_driver_sql(statement, parameters)
        return {r[1]: r[0] for r in result.all()}
    lite = SqliteReportAndOutbox()
    inserted = await conn.exec_driver_sql(
        lite.reports.statement(len(batch)), lite.reports.parameters(batch)
    )
    if inserted.rowcount == 0:
        return {}
    last_key = inserted.lastrowid - inserted.rowcount
    await conn.exec_driver_sql(lite.outbox, lite.outbox_parameters(now, last_key))
    (created,) = (await conn.exec_driver_sql(lite.created, (last_key,))).one()
    return lite.created_keys(created)


async def _given_rows(
    conn: AsyncConnection, batch: list[dict[str, Any]], now: datetime
) -> dict[uuid.UUID, int]:
    """Each outbox row of ``forward_rows`` given whole (a typed insert), after the reports."""
    dialect = conn.dialect
    reports = ReportInsert(dialect.name, dialect.paramstyle)
    result = await conn.exec_driver_sql(reports.statement(len(batch)), reports.parameters(batch))
    returned = {reports.returned_id(r[1]): r[0] for r in result.all()}
    new = [
        {**row, "report_pk": returned[row["report_id"]]}
        for row in outbox_rows(batch, now)
        if row["report_id"] in returned
    ]
    if new:
        await conn.execute(FORWARDS.insert(), new)
    return returned


async def both_ways(
    url: str, batch: list[dict[str, Any]], stored_first: list[bool], one: ReportAndOutboxInsert
) -> None:
    engine = create_engine(url)
    now = datetime(2026, 5, 1, tzinfo=UTC)
    earlier = [row for row, first in zip(batch, stored_first, strict=True) if first]
    contents = []
    try:
        for derived in (True, False):
            async with engine.begin() as conn:
                reports = ReportInsert(conn.dialect.name, conn.dialect.paramstyle)
                await conn.execute(delete(FORWARDS))
                await conn.execute(delete(REPORTS))
                if earlier:
                    await conn.exec_driver_sql(
                        reports.statement(len(earlier)), reports.parameters(earlier)
                    )
                write = (
                    _derived(conn, batch, now, one) if derived else _given_rows(conn, batch, now)
                )
                returned = await write
                assert set(returned) == {
                    row["report_id"]
                    for row, first in zip(batch, stored_first, strict=True)
                    if not first
                }
                contents.append(await _contents(conn))
        assert contents[0] == contents[1]
        stored_reports, stored_forwards = contents[0]
        assert len(stored_reports) == len(batch)
        assert len(stored_forwards) == sum(
            len(row["metrics"]) for row, first in zip(batch, stored_first, strict=True) if not first
        )
    finally:
        await engine.dispose()


@WITH_A_DATABASE
@given(
    data=st.lists(
        st.tuples(rows(), st.booleans()),
        min_size=1,
        max_size=5,
        unique_by=lambda t: t[0]["report_id"],
    ),
    arrays=st.booleans(),
)
def test_outbox_rows_derived_from_the_reports_are_the_rows_forward_rows_gives(
    database_url: str, data: list[tuple[dict[str, Any], bool]], arrays: bool
) -> None:
    """The writer's outbox rows, derived from the reports it inserted, are ``forward_rows``' rows.

    Stored ids get none. PostgreSQL's one statement in both its forms (a parameter per value,
    a parameter per column); SQLite's outbox insert from each new report's row.
    """
    url = CollectorSettings(database_url=database_url).async_database_url()
    one = ReportAndOutboxInsert(cacheable_text=0 if arrays else 10**9)
    asyncio.run(upgrade_async(url))
    asyncio.run(both_ways(url, [row for row, _ in data], [first for _, first in data], one))


def test_a_batch_too_long_for_the_statement_cache_takes_the_array_form() -> None:
    one = ReportAndOutboxInsert()
    row = plain_row()
    small, _ = one.build([row], row["created_at"])
    many = [plain_row() for _ in range(300)]
    large, _ = one.build(many, row["created_at"])
    assert "VALUES" in small
    assert len(small) <= ASYNCPG_CACHEABLE_TEXT
    assert large == one.arrays_statement


@pytest.mark.parametrize("arrays", [False, True])
def test_derived_outbox_rows_spell_each_metric_value_as_forward_rows_does(
    database_url: str, arrays: bool
) -> None:
    """Numbers whose text a ``jsonb`` or ``numeric`` round trip would respell."""
    row = plain_row()
    row["metrics"] = {
        "tiny": 1e-05,
        "subnormal": 5e-324,
        "whole_float": 1.0,
        "zero": 0,
        "large": 10**12,
        "fraction": 123456789012.5,
        "Upper": 0.1,
        "_under": 2.5e-08,
    }
    url = CollectorSettings(database_url=database_url).async_database_url()
    one = ReportAndOutboxInsert(cacheable_text=0 if arrays else 10**9)
    asyncio.run(upgrade_async(url))
    asyncio.run(both_ways(url, [row], [False], one))
