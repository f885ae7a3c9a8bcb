"""A row the database refuses fails only its own request, never the others in its transaction.

Reports from several customers arrive at once through the group-commit writer, some of them
unstorable (a device count past what the column holds): every storable one is stored, every
other one is refused with a 4xx error, whatever the mix and order.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from collector.adapters.db.engine import create_engine
from collector.adapters.db.migrate import upgrade_async
from collector.adapters.db.tables import FORWARDS, REPORTS
from collector.adapters.db.writer import GroupCommitWriter
from collector.api.app import build_services
from collector.errors import CollectorError, DatabaseUnavailable, ValidationFailed
from collector.services.ingest import _to_row
from collector.settings import CollectorSettings
from tests.integration.collector.test_ingest import make_report

SERIAL = itertools.count()
NOW = datetime.now(UTC)


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    database=None,
)
@given(
    mix=st.lists(
        st.tuples(st.sampled_from(["cust_a", "cust_b", "cust_c"]), st.booleans()),
        min_size=1,
        max_size=40,
    )
)
def test_only_the_unstorable_reports_fail(database_url: str, mix: list[tuple[str, bool]]) -> None:
    asyncio.run(submit(database_url, mix))


async def submit(database_url: str, mix: list[tuple[str, bool]]) -> None:
    settings_ = CollectorSettings(database_url=database_url, stripe_mode="off")
    await upgrade_async(settings_.async_database_url())
    services = build_services(settings_, registry=CollectorRegistry())
    now = datetime.now(UTC)
    try:
        before = await services.store.count()
        rows = []
        for customer, storable in mix:
            report = make_report(customer_id=customer, instance_id=f"i{next(SERIAL)}")
            row = _to_row(report, legacy=False, received_at=now)
            if not storable:
                row["active_devices"] = 2**70
            rows.append(row)
        answers = await asyncio.gather(
            *(services.store.writer.insert(row) for row in rows), return_exceptions=True
        )
        for (_, storable), answer in zip(mix, answers, strict=True):
            if storable:
                assert isinstance(answer, tuple), answer
                assert answer[1], answer
            else:
                assert isinstance(answer, ValidationFailed), answer
                assert answer.status_code == 422
        assert await services.store.count() - before == sum(s for _, s in mix)
    finally:
        await services.close()


POISON_SQLITE = (
    "CREATE TRIGGER poison BEFORE INSERT ON forwards WHEN NEW.customer_id = 'poisoned' "
    "BEGIN SELECT RAISE(ABORT, 'outbox refused'); END"
)
POISON_POSTGRES = (
    "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "IF NEW.customer_id = 'poisoned' THEN "
    "RAISE EXCEPTION 'outbox refused' USING ERRCODE = 'check_violation'; END IF; "
    "RETURN NEW; END $$",
    "CREATE TRIGGER poison BEFORE INSERT ON forwards FOR EACH ROW EXECUTE FUNCTION poison()",
)


async def _sql(engine: AsyncEngine, *statements: str) -> None:
    async with engine.begin() as conn:
        for statement in statements:
            await conn.exec_driver_sql(statement)


async def _stored(engine: AsyncEngine) -> tuple[set[str], dict[str, int]]:
    """The instances with a stored report, and how many outbox rows each has."""
    async with engine.connect() as conn:
        reports = {r for (r,) in await conn.execute(select(REPORTS.c.instance_id))}
        forwards = dict(
            (
                await conn.execute(
                    select(FORWARDS.c.instance_id, func.count()).group_by(FORWARDS.c.instance_id)
                )
            ).all()
        )
    return reports, {k: int(v) for k, v in forwards.items()}


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    database=None,
)
@given(poisoned=st.lists(st.booleans(), min_size=1, max_size=12))
def test_a_report_commits_with_its_outbox_rows_or_not_at_all(
    database_url: str, poisoned: list[bool]
) -> None:
    """The outbox insert fails for some reports of a batch: none of those is stored, the rest are.

    The database refuses the outbox rows (a trigger), after the report row was written in the
    same transaction. A report stored without its outbox rows would never be billed.
    """
    asyncio.run(submit_poisoned(database_url, poisoned))


async def submit_poisoned(database_url: str, poisoned: list[bool]) -> None:
    settings_ = CollectorSettings(database_url=database_url, stripe_mode="off")
    url = settings_.async_database_url()
    await upgrade_async(url)
    services = build_services(settings_, registry=CollectorRegistry())
    engine = create_engine(url)
    postgres = engine.dialect.name == "postgresql"
    now = datetime.now(UTC)
    try:
        await _sql(engine, *(POISON_POSTGRES if postgres else (POISON_SQLITE,)))
        reports = [
            make_report(customer_id="poisoned" if bad else "cust_a", instance_id=f"p{next(SERIAL)}")
            for bad in poisoned
        ]
        answers = await asyncio.gather(
            *(
                services.store.writer.insert(_to_row(r, legacy=False, received_at=now))
                for r in reports
            ),
            return_exceptions=True,
        )
        stored, forwards = await _stored(engine)
        for report, bad, answer in zip(reports, poisoned, answers, strict=True):
            if bad:
                assert isinstance(answer, CollectorError), answer
                assert report.instance_id not in stored
                assert report.instance_id not in forwards
            else:
                assert isinstance(answer, tuple), answer
                assert answer[1]
                assert report.instance_id in stored
                assert forwards[report.instance_id] == len(report.metrics)

        await _sql(engine, "DROP TRIGGER poison ON forwards" if postgres else "DROP TRIGGER poison")
        retried = await asyncio.gather(
            *(
                services.store.writer.insert(_to_row(r, legacy=False, received_at=now))
                for r in reports
            )
        )
        assert [created for _, created in retried] == poisoned
        stored, forwards = await _stored(engine)
        for report in reports:
            assert report.instance_id in stored
            assert forwards[report.instance_id] == len(report.metrics)
    finally:
        if postgres:
            await _sql(engine, "DROP FUNCTION IF EXISTS poison() CASCADE")
        await engine.dispose()
        await services.close()


def test_new_reports_are_answered_when_reading_back_stored_ones_fails(database_url: str) -> None:
    """A batch of new and already stored reports, and the read of the stored ones fails.

    The new reports were committed with their outbox rows, so they are answered as stored;
    only the repeats get the error, and a retry finds them.
    """
    asyncio.run(read_back_fails(database_url))


async def read_back_fails(database_url: str) -> None:
    url = CollectorSettings(database_url=database_url).async_database_url()
    await upgrade_async(url)
    engine = create_engine(url)
    now = datetime.now(UTC)
    writer = GroupCommitWriter(engine, outbox=lambda: now)

    def refuse_reads(
        _conn: object, _cursor: object, statement: str, *_args: object, **_kw: object
    ) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "usage_reports" in statement:
            raise OperationalError(statement, {}, Exception("read refused"))

    try:
        stored = [make_report(instance_id=f"s{next(SERIAL)}") for _ in range(3)]
        for report in stored:
            assert (await writer.insert(_to_row(report, legacy=False, received_at=now)))[1]
        fresh = [make_report(instance_id=f"n{next(SERIAL)}") for _ in range(3)]
        event.listen(engine.sync_engine, "before_cursor_execute", refuse_reads)
        answers = await asyncio.gather(
            *(writer.insert(_to_row(r, legacy=False, received_at=now)) for r in [*stored, *fresh]),
            return_exceptions=True,
        )
        event.remove(engine.sync_engine, "before_cursor_execute", refuse_reads)
        assert all(isinstance(a, DatabaseUnavailable) for a in answers[:3]), answers
        assert all(isinstance(a, tuple) and a[1] for a in answers[3:]), answers
        instances, forwards = await _stored(engine)
        for report in [*stored, *fresh]:
            assert report.instance_id in instances
            assert forwards[report.instance_id] == len(report.metrics)
        again = await writer.insert(_to_row(stored[0], legacy=False, received_at=now))
        assert again[1] is False
        assert again[0].instance_id == stored[0].instance_id
    finally:
        await writer.close()
        await engine.dispose()


def test_two_writers_on_one_database_each_answer_their_own_rows(database_url: str) -> None:
    """Two collector processes' writers insert at once, some reports sent to both.

    Each report is answered as new by exactly one writer, every answer carries the key the
    database holds for that report, and each report has its own outbox rows, one per metric.
    On SQLite a writer tells its new rows apart by their keys: a row of the other writer's
    transaction taken for its own would show here as a wrong key or misplaced outbox rows.
    """
    asyncio.run(two_writers(database_url))


async def two_writers(database_url: str) -> None:
    url = CollectorSettings(database_url=database_url).async_database_url()
    await upgrade_async(url)
    engines = [create_engine(url), create_engine(url)]
    now = datetime.now(UTC)
    writers = [GroupCommitWriter(engine, outbox=lambda: now) for engine in engines]
    reports = [make_report(instance_id=f"w{next(SERIAL)}") for _ in range(120)]
    try:
        sends = [
            (writer, report)
            for index, report in enumerate(reports)
            for writer in (writers if index % 3 == 0 else [writers[index % 2]])
        ]
        answers = []
        for _ in range(3):
            answers += await asyncio.gather(
                *(w.insert(_to_row(r, legacy=False, received_at=now)) for w, r in sends)
            )
            sends = sends[::-1]
        async with engines[0].connect() as conn:
            keys = dict((await conn.execute(select(REPORTS.c.report_id, REPORTS.c.id))).all())
            owners = (await conn.execute(select(FORWARDS.c.report_id, FORWARDS.c.report_pk))).all()
        created = sorted(stored.report_id for stored, new in answers if new)
        assert created == sorted(r.id for r in reports)
        assert all(stored.id == keys[stored.report_id] for stored, _ in answers)
        assert sorted(pk for _, pk in owners) == sorted(
            keys[r.id] for r in reports for _ in r.metrics
        )
        assert all(keys[report_id] == pk for report_id, pk in owners)
    finally:
        for writer in writers:
            await writer.close()
        for engine in engines:
            await engine.dispose()


def test_a_metric_name_sqlite_cannot_address_is_refused_alone(tmp_path: Path) -> None:
    """SQLite's JSON paths cannot spell a key holding a double quote: only that report fails.

    No catalogue name holds one. Its outbox value would be NULL, which the outbox refuses: the
    report is refused, never stored without its outbox rows.
    """
    asyncio.run(quoted_metric(f"sqlite+aiosqlite:///{tmp_path / 'quoted.db'}"))


async def quoted_metric(url: str) -> None:
    async with sqlite_writer(url) as (engine, writer):
        plain = fresh_row("q")
        quoted = {**plain, "report_id": uuid.uuid4(), "metrics": {'a"b': 1}}
        answers = await asyncio.gather(
            writer.insert(plain), writer.insert(quoted), return_exceptions=True
        )
        assert isinstance(answers[0], tuple), answers
        assert answers[0][1]
        assert isinstance(answers[1], ValidationFailed), answers
        instances, forwards = await _stored(engine)
        assert instances == {plain["instance_id"]}
        assert forwards == {plain["instance_id"]: len(plain["metrics"])}


def test_a_table_past_the_largest_key_refuses_rather_than_misplace_rows(tmp_path: Path) -> None:
    """With a key at SQLite's largest rowid, new rows get random keys, not the next ones.

    The writer's count of new rows then disagrees with the rows above its key: it stores
    nothing and answers that the database is unavailable, rather than answer with, or derive
    outbox rows from, another report's row.
    """
    asyncio.run(largest_key(f"sqlite+aiosqlite:///{tmp_path / 'largest.db'}"))


async def largest_key(url: str) -> None:
    async with sqlite_writer(url) as (engine, writer):
        first = fresh_row("k")
        assert (await writer.insert(first))[1]
        await _sql(engine, f"UPDATE usage_reports SET id = {2**63 - 1}")
        with pytest.raises(DatabaseUnavailable):
            await writer.insert(fresh_row("k"))
        instances, _ = await _stored(engine)
        assert instances == {first["instance_id"]}


def fresh_row(prefix: str) -> dict[str, Any]:
    """A new report's row, for an instance no other test uses."""
    return _to_row(
        make_report(instance_id=f"{prefix}{next(SERIAL)}"), legacy=False, received_at=NOW
    )


@contextlib.asynccontextmanager
async def sqlite_writer(url: str) -> AsyncIterator[tuple[AsyncEngine, GroupCommitWriter]]:
    """A migrated database and a writer on it, closed and disposed of afterwards."""
    await upgrade_async(url)
    engine = create_engine(url)
    writer = GroupCommitWriter(engine, outbox=lambda: NOW)
    try:
        yield engine, writer
    finally:
        await writer.close()
        await engine.dispose()
