"""The group-commit writer's statements on the driver's own connection.

Through SQLAlchemy, a transaction of two inserts cost about 500 µs of CPU on SQLite and 250 µs
on PostgreSQL before any row was written (execution contexts, greenlet switches, and nine hops
through aiosqlite's thread for cursor, execute, fetch and close of each statement). Under load
the writer's batches hold a few reports each, so that was most of a report's database cost.
On SQLite, :func:`sqlite_transaction` runs the whole transaction in one hop through aiosqlite's
thread; on PostgreSQL, the writer's one statement is its own transaction
(:func:`postgres_statement`, one round trip).

The connection stays checked out of SQLAlchemy's pool, which still opens, pings and resets it.
Driver errors leave as collector errors, chained: :class:`RowRefused` when the database refused
a value of a row (out of range, a constraint), :class:`DatabaseUnavailable` for everything else,
so a failure of unclear cause is retried by the agent rather than refused for good.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any, cast

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from collector.errors import CollectorError, DatabaseUnavailable

_REFUSED_CLASSES = ("22", "23")
"""SQLSTATE classes of a refused value: data exception, integrity constraint violation."""


class RowRefused(CollectorError):
    """The database refused a value of a row; the rest of its transaction may be fine."""


class KeptConnection:
    """A pool connection kept between uses, and the driver's connection under it, looked up once.

    A checkout and its driver lookup cost a ping, a reset and a greenlet hop: the writer and the
    shared rate limit, on every request's path, keep theirs. A connection kept on an event loop
    that is gone is dropped, not closed.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None
        self._driver: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None

    async def connection(self) -> AsyncConnection:
        loop = asyncio.get_running_loop()
        if self._conn is not None and self._loop is not loop:
            self._conn, self._driver = None, None
        if self._conn is None:
            self._conn = await self._engine.connect()
            self._loop = loop
        return self._conn

    async def driver(self) -> Any:
        """The driver's own connection under the kept one."""
        if self._driver is None:
            conn = await self.connection()
            self._driver = (await conn.get_raw_connection()).driver_connection
        return self._driver

    async def release(self) -> None:
        """Give the connection back to the pool; one that cannot be closed is discarded."""
        conn, self._conn, self._driver = self._conn, None, None
        if conn is None or self._loop is not asyncio.get_running_loop():
            return
        try:
            await conn.close()
        except Exception:
            with suppress(Exception):
                await conn.invalidate()


async def sqlite_transaction[T](
    driver: Any, work: Callable[[sqlite3.Connection], T], *, begin: str
) -> T:
    """``work(connection)`` in one transaction on aiosqlite ``driver``'s ``sqlite3`` connection.

    The whole transaction is one call on aiosqlite's thread: ``begin`` (``BEGIN IMMEDIATE`` for
    a writer), ``work``, then the commit, or the rollback when ``work`` or the commit raises
    (the error leaves translated). Returns what ``work`` returned. The connection must not be
    in a SQLAlchemy transaction.
    """

    def transaction() -> T:
        raw: sqlite3.Connection = driver._conn
        if raw.in_transaction:
            raw.rollback()
        try:
            raw.execute(begin)
            result = work(raw)
            raw.commit()
        except BaseException:
            with suppress(Exception):
                raw.rollback()
            raise
        return result

    async with _translated():
        # aiosqlite has no public way to run a whole transaction in one hop; a hop per
        # statement and commit held each batch longer (docs/benchmarks.md).
        return cast(T, await driver._execute(transaction))


async def postgres_statement(
    driver: Any, sql: str, parameters: Sequence[Any]
) -> Sequence[Sequence[Any]]:
    """``sql`` as a transaction of its own on asyncpg ``driver``, committed when it returns.

    Returns its rows. The connection must not be in a SQLAlchemy transaction.
    """
    async with _translated():
        return list(await driver.fetch(sql, *parameters))


@asynccontextmanager
async def _translated() -> AsyncIterator[None]:
    try:
        yield
    except CollectorError:
        raise
    except Exception as exc:
        raise translate(exc) from exc


def refused_value(exc: BaseException) -> bool:
    """The driver says a value of a row cannot be stored (not that the database failed)."""
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError | OverflowError):
        return True
    if isinstance(exc, asyncpg.InterfaceError) and isinstance(exc, ValueError):
        return True  # asyncpg's own DataError: an argument it cannot encode (out of range)
    if isinstance(exc, asyncpg.PostgresError):
        return str(getattr(exc, "sqlstate", "") or "")[:2] in _REFUSED_CLASSES
    return False


def translate(exc: Exception) -> CollectorError:
    """A driver error as :class:`RowRefused` or :class:`DatabaseUnavailable` (not chained)."""
    if refused_value(exc):
        return RowRefused(f"the database refused a value ({type(exc).__name__})")
    return DatabaseUnavailable(f"the database is unavailable ({type(exc).__name__})")
