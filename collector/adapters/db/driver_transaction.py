"""One transaction on the driver's own connection: the group-commit writer's path.

Through SQLAlchemy, a transaction of two inserts cost about 500 µs of CPU on SQLite and 250 µs
on PostgreSQL before any row was written (execution contexts, greenlet switches, and nine hops
through aiosqlite's thread for cursor, execute, fetch and close of each statement). Under load
the writer's batches hold a few reports each, so that was most of a report's database cost.
Here a transaction is: on SQLite, one hop per statement plus the commit (``sqlite3`` begins the
transaction itself before the first insert); on PostgreSQL, asyncpg's own transaction.

The connection stays checked out of SQLAlchemy's pool, which still opens, pings and resets it.
Driver errors leave as collector errors, chained: :class:`RowRefused` when the database refused
a value of a row (out of range, a constraint), :class:`DatabaseUnavailable` for everything else,
so a failure of unclear cause is retried by the agent rather than refused for good.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any, Protocol

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection

from collector.errors import CollectorError, DatabaseUnavailable

_REFUSED_CLASSES = ("22", "23")
"""SQLSTATE classes of a refused value: data exception, integrity constraint violation."""


class RowRefused(CollectorError):
    """The database refused a value of a row; the rest of its transaction may be fine."""


class Statements(Protocol):
    async def rows(self, sql: str, parameters: Sequence[Any]) -> Sequence[Sequence[Any]]:
        """Run ``sql`` and return the rows it gives back."""
        ...

    async def run(self, sql: str, parameters: Sequence[Any]) -> None:
        """Run ``sql``; whatever it returns is dropped."""
        ...


class _Sqlite:
    def __init__(self, connection: Any) -> None:
        self._connection = connection

    async def rows(self, sql: str, parameters: Sequence[Any]) -> Sequence[Sequence[Any]]:
        try:
            return list(await self._connection.execute_fetchall(sql, parameters))
        except Exception as exc:
            raise translate(exc) from exc

    async def run(self, sql: str, parameters: Sequence[Any]) -> None:
        await self.rows(sql, parameters)


class _Postgres:
    def __init__(self, connection: Any) -> None:
        self._connection = connection

    async def rows(self, sql: str, parameters: Sequence[Any]) -> Sequence[Sequence[Any]]:
        try:
            return list(await self._connection.fetch(sql, *parameters))
        except Exception as exc:
            raise translate(exc) from exc

    async def run(self, sql: str, parameters: Sequence[Any]) -> None:
        try:
            await self._connection.execute(sql, *parameters)
        except Exception as exc:
            raise translate(exc) from exc


@asynccontextmanager
async def driver_transaction(conn: AsyncConnection) -> AsyncIterator[Statements]:
    """Statements in one transaction on ``conn``'s driver connection, committed on success.

    ``conn`` must not be in a SQLAlchemy transaction. Leaving the block by an exception rolls
    the transaction back and lets the exception through; the statements, the begin and the
    commit raise translated errors (see the module's notes).
    """
    async with _translated():
        driver = (await conn.get_raw_connection()).driver_connection
    if conn.dialect.name == "sqlite":
        async with _sqlite_transaction(driver) as statements:
            yield statements
    elif conn.dialect.name == "postgresql":
        async with _postgres_transaction(driver) as statements:
            yield statements
    else:
        raise DatabaseUnavailable(f"unsupported database dialect {conn.dialect.name!r}")


async def single_statement(
    conn: AsyncConnection, sql: str, parameters: Sequence[Any]
) -> Sequence[Sequence[Any]]:
    """``sql`` as a transaction of its own, committed when it returns: one round trip on PostgreSQL.

    ``conn`` must not be in a SQLAlchemy transaction.
    """
    if conn.dialect.name != "postgresql":
        async with driver_transaction(conn) as statements:
            return await statements.rows(sql, parameters)
    async with _translated():
        driver = (await conn.get_raw_connection()).driver_connection
    return await _Postgres(driver).rows(sql, parameters)


@asynccontextmanager
async def _translated() -> AsyncIterator[None]:
    try:
        yield
    except CollectorError:
        raise
    except Exception as exc:
        raise translate(exc) from exc


@asynccontextmanager
async def _sqlite_transaction(driver: Any) -> AsyncIterator[Statements]:
    async with _translated():
        if driver.in_transaction or driver.isolation_level is None:
            await driver.rollback()
            await driver.execute_fetchall("BEGIN")
    try:
        yield _Sqlite(driver)
    except BaseException:
        with suppress(Exception):
            await driver.rollback()
        raise
    try:
        async with _translated():
            await driver.commit()
    except BaseException:
        with suppress(Exception):
            await driver.rollback()
        raise


@asynccontextmanager
async def _postgres_transaction(driver: Any) -> AsyncIterator[Statements]:
    transaction = driver.transaction()
    async with _translated():
        await transaction.start()
    try:
        yield _Postgres(driver)
    except BaseException:
        with suppress(Exception):
            await transaction.rollback()
        raise
    async with _translated():
        await transaction.commit()


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
