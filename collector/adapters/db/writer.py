"""Group commit: concurrent report inserts share one transaction, each answered after it commits.

One writer task drains whatever arrived while the previous transaction was committing, inserts the
batch with ``ON CONFLICT (report_id) DO NOTHING`` (one driver-level statement, see
``report_insert``), the new reports' outbox rows in the same transaction (on the driver's own
connection, see ``driver_transaction``), and resolves each caller with the stored row and whether
it was new. Nothing is acknowledged before its transaction has committed. A report already stored
is read back after the commit: stored reports never change.

The writer keeps its connection while reports keep coming and returns it to the pool after
``LINGER`` seconds without one, or after any failure: a checkout per batch (a ping on
PostgreSQL, a reset on return) cost about a third of a small batch's CPU. A connection idle
longer goes back through the pool's checks before its next batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
    StatementError,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from collector.adapters.db.driver_transaction import (
    KeptConnection,
    RowRefused,
    postgres_statement,
    sqlite_transaction,
)
from collector.adapters.db.report_insert import (
    ReportAndOutboxInsert,
    SqliteReportAndOutbox,
)
from collector.adapters.db.tables import REPORTS, StoredReport
from collector.errors import DatabaseUnavailable, ValidationFailed

OutboxClock = Callable[[], datetime]
"""The time the outbox rows of a batch's new reports are created at."""
LINGER = 1.0
"""Seconds the writer keeps its connection with no report waiting."""


@dataclass
class _Pending:
    values: dict[str, Any]
    future: asyncio.Future[tuple[StoredReport, bool]] = field(repr=False)


_Statements = ReportAndOutboxInsert | SqliteReportAndOutbox
"""PostgreSQL: the reports and their outbox rows in one statement. SQLite: the reports, then
the outbox rows of the new ones, in one transaction."""


def _row(mapping: Any) -> StoredReport:
    return StoredReport(**dict(mapping))


class GroupCommitWriter:
    """Inserts reports idempotently, batching whatever is waiting into one transaction."""

    def __init__(
        self, engine: AsyncEngine, *, max_batch: int = 500, outbox: OutboxClock | None = None
    ) -> None:
        self._max_batch = max_batch
        self._outbox = outbox
        self._sql: _Statements | None = None
        self._kept = KeptConnection(engine)
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.inserted = 0

    def set_outbox(self, now: OutboxClock) -> None:
        """Write each new report's outbox rows, one per metric, in its transaction."""
        self._outbox = now

    async def insert(self, values: dict[str, Any]) -> tuple[StoredReport, bool]:
        queue = self._ensure_running()
        future: asyncio.Future[tuple[StoredReport, bool]] = (
            asyncio.get_running_loop().create_future()
        )
        queue.put_nowait(_Pending(values, future))
        # A cancelled caller cancels only its own future: the writer skips answering it, and
        # the report is still written with its batch.
        return await future

    def _ensure_running(self) -> asyncio.Queue[_Pending]:
        if self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._run(self._queue))
        assert self._queue is not None
        return self._queue

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._release()

    async def _release(self) -> None:
        await self._kept.release()

    async def _next(self, queue: asyncio.Queue[_Pending]) -> _Pending:
        """The next waiting report; the connection goes back to the pool while none comes."""
        if not queue.empty() or not self._kept.held:
            return await queue.get()
        try:
            async with asyncio.timeout(LINGER):
                return await queue.get()
        except TimeoutError:
            await self._release()
            return await queue.get()

    async def _run(self, queue: asyncio.Queue[_Pending]) -> None:
        try:
            await self._drain(queue)
        finally:
            await self._release()

    async def _drain(self, queue: asyncio.Queue[_Pending]) -> None:
        while True:
            batch = [await self._next(queue)]
            while len(batch) < self._max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                results = await self._write(batch)
            except Exception as exc:
                if len(batch) > 1 and not _unavailable(exc):
                    await self._write_alone(batch)
                    continue
                error = _translate(exc)
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(error)
                continue
            for pending, result in zip(batch, results, strict=True):
                _answer(pending, result)

    async def _write_alone(self, batch: list[_Pending]) -> None:
        """A shared transaction failed on some row: write each on its own, so only it fails."""
        for pending in batch:
            try:
                (result,) = await self._write([pending])
            except Exception as exc:
                if not pending.future.done():
                    pending.future.set_exception(_translate(exc))
                continue
            _answer(pending, result)

    def _insert_sql(self, conn: AsyncConnection) -> _Statements:
        if self._sql is None:
            name = conn.dialect.name
            if name == "postgresql":
                self._sql = ReportAndOutboxInsert()
            elif name == "sqlite":
                self._sql = SqliteReportAndOutbox()
            else:
                raise DatabaseUnavailable(f"unsupported database dialect {name!r}")
        return self._sql

    async def _write(self, batch: list[_Pending]) -> list[tuple[StoredReport, bool] | Exception]:
        """Each report's answer: the stored row and whether it is new, or why it has none.

        Reports already stored are read after the new ones committed. If that read fails, only
        they are answered with the error (a retry finds them stored); the new ones are committed.
        """
        first_by_id: dict[uuid.UUID, dict[str, Any]] = {}
        for pending in batch:
            first_by_id.setdefault(pending.values["report_id"], pending.values)
        conn = await self._kept.connection()
        try:
            created = await self._insert(conn, first_by_id)
        except BaseException:
            await self._release()  # a failed transaction may have left it unusable
            raise
        self.batches += 1
        self.inserted += len(created)
        others = [rid for rid in first_by_id if rid not in created]
        existing: dict[uuid.UUID, StoredReport] = {}
        unread: Exception = DatabaseUnavailable("the stored report could not be read back")
        if others:
            try:
                existing = await self._stored(conn, others)
            except Exception as exc:
                await self._release()
                unread = _translate(exc)
        results: list[tuple[StoredReport, bool] | Exception] = []
        claimed: set[uuid.UUID] = set()
        for pending in batch:
            rid = pending.values["report_id"]
            if rid in created:
                results.append((created[rid], rid not in claimed))
                claimed.add(rid)
            elif rid in existing:
                results.append((existing[rid], False))
            else:
                results.append(unread)
        return results

    async def _insert(
        self, conn: AsyncConnection, first_by_id: dict[uuid.UUID, dict[str, Any]]
    ) -> dict[uuid.UUID, StoredReport]:
        """Insert the new reports and their outbox rows in one transaction; the new ones by id."""
        sql = self._insert_sql(conn)
        rows = list(first_by_id.values())
        now = self._outbox() if self._outbox is not None else None
        driver = await self._kept.driver()
        if isinstance(sql, ReportAndOutboxInsert):
            statement, parameters = (
                sql.build(rows, now)
                if now is not None
                else (sql.reports.statement(len(rows)), sql.reports.parameters(rows))
            )
            returned = await postgres_statement(driver, statement, parameters)
            ids = sql.reports.returned_ids(first_by_id)
            created = {}
            for pk, value in returned:
                rid = ids[value]
                created[rid] = StoredReport(id=pk, **first_by_id[rid])
            return created
        statement, parameters = sql.reports.statement(len(rows)), sql.reports.parameters(rows)

        def work(raw: Any) -> dict[uuid.UUID, int]:
            inserted = raw.execute(statement, parameters)
            count = inserted.rowcount
            if count == 0:
                return {}
            last_key = inserted.lastrowid - count
            if now is not None:
                raw.execute(sql.outbox, sql.outbox_parameters(now, last_key))
            (created,) = raw.execute(sql.created, (last_key,)).fetchone()
            keys = sql.created_keys(created)
            if len(keys) != count:
                raise DatabaseUnavailable("the new reports' keys do not follow the stored ones")
            return keys

        keys = await sqlite_transaction(driver, work, begin=sql.begin)
        return {rid: StoredReport(id=key, **first_by_id[rid]) for rid, key in keys.items()}

    async def _stored(
        self, conn: AsyncConnection, report_ids: list[uuid.UUID]
    ) -> dict[uuid.UUID, StoredReport]:
        async with conn.begin():
            query = select(REPORTS).where(REPORTS.c.report_id.in_(report_ids))
            return {r.report_id: _row(r._mapping) for r in (await conn.execute(query)).all()}


def _answer(pending: _Pending, result: tuple[StoredReport, bool] | Exception) -> None:
    if pending.future.done():
        return
    if isinstance(result, Exception):
        pending.future.set_exception(result)
    else:
        pending.future.set_result(result)


def _unavailable(exc: Exception) -> bool:
    """The database itself failed (not one row): retrying rows one by one cannot help."""
    return isinstance(exc, DatabaseUnavailable | OperationalError | InterfaceError | OSError)


def _bad_value(exc: Exception) -> bool:
    """One row's value cannot be stored (out of range, or refused by a constraint)."""
    if isinstance(exc, StatementError) and not isinstance(exc, DBAPIError):
        return isinstance(exc.orig, OverflowError | ValueError | TypeError)
    return isinstance(exc, RowRefused | DataError | IntegrityError | OverflowError) or (
        isinstance(exc, DBAPIError) and not _unavailable(exc)
    )


def _translate(exc: Exception) -> Exception:
    if isinstance(exc, DatabaseUnavailable):
        return exc
    if _bad_value(exc):
        refused = ValidationFailed(
            f"a value of this report cannot be stored ({type(exc).__name__}); "
            "check device counts, metric values and window times"
        )
        refused.__cause__ = exc
        return refused
    if isinstance(exc, SQLAlchemyError | OSError):
        error = DatabaseUnavailable(f"the database is unavailable ({type(exc).__name__})")
        error.__cause__ = exc
        return error
    return exc
