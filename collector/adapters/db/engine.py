"""Engine construction: SQLite in WAL mode for the embedded default, asyncpg for PostgreSQL.

A database that cannot be opened is reported here, once, as one line that names the URL with
its password masked: a SQLite file in a directory that does not exist, a refused or unknown
host, a wrong password. :func:`create_engine` and :func:`connection_to` raise
:class:`DatabaseUnavailable` for these, never a driver error; the stores translate what fails
later, inside a query.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from collector.errors import DatabaseUnavailable

SQLITE_BUSY_TIMEOUT_MS = 10_000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def sqlite_file(url: URL) -> Path | None:
    """The file a SQLite URL opens, or ``None`` for an in-memory database."""
    database = url.database or ""
    if database in {"", ":memory:"} or database.startswith("file:"):
        return None
    return Path(database)


def create_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> AsyncEngine:
    """An async engine for ``url``; SQLite files get WAL, a busy timeout and foreign keys.

    A SQLite file whose directory does not exist raises :class:`DatabaseUnavailable` here:
    SQLite would only say "unable to open database file".
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_file(parsed)
        if path is not None and not path.parent.is_dir():
            raise DatabaseUnavailable(
                f"cannot open database {redacted(url)}: directory {path.parent} does not exist"
            )
        engine = create_async_engine(
            url, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
    )


def redacted(url: str | URL) -> str:
    """The URL with its password hidden, for logs and errors."""
    return make_url(url).render_as_string(hide_password=True)


def _reason(exc: BaseException) -> str:
    """The driver's own words, on one line, without SQLAlchemy's wrapping."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def unreachable(engine: AsyncEngine, exc: BaseException) -> DatabaseUnavailable:
    """``cannot reach database <url>: <reason>``, the password masked."""
    return DatabaseUnavailable(f"cannot reach database {redacted(engine.url)}: {_reason(exc)}")


@asynccontextmanager
async def connection_to(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection; failing to open one raises :class:`DatabaseUnavailable` naming the URL.

    Only opening is translated: an error inside the block is the caller's to interpret.
    """
    try:
        connection = await engine.connect()
    except (DBAPIError, OSError) as exc:
        raise unreachable(engine, exc) from exc
    try:
        yield connection
    finally:
        await connection.close()
