"""Leadership through PostgreSQL: a session-level advisory lock on a connection of its own.

A replica leads while its session holds the advisory lock ``LEADER_LOCK``. The lock lives as long
as the session: when a replica is killed its socket closes, PostgreSQL ends the session and frees
the lock at once. A leader that hangs, or is cut off from the database, stops using its session;
``idle_session_timeout`` (three checks) then makes PostgreSQL end it, and TCP keepalives notice a
peer that vanished. Every statement is bounded by ``command_timeout`` (one check), so a leader
whose database stops answering learns it within one check.

The connection is not from the pool: its settings never leak into other queries, and closing it
can never hand a held lock to another user of the pool. SQLite runs one replica, which always
leads (``SingleProcessLock``).
"""

from __future__ import annotations

import contextlib

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from collector.errors import DatabaseUnavailable

LEADER_LOCK = 0x55534C44
"""The advisory lock key of leadership (formation's transaction lock uses another)."""
KEEPALIVE_IDLE = 10
KEEPALIVE_INTERVAL = 5
KEEPALIVE_COUNT = 3

_TRY = text("SELECT pg_try_advisory_lock(:key)")
_HELD = text(
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND pid = pg_backend_pid() AND classid = 0 AND objid = :key AND objsubid = 1)"
)
_UNLOCK = text("SELECT pg_advisory_unlock(:key)")


def _unavailable(exc: BaseException) -> DatabaseUnavailable:
    return DatabaseUnavailable(f"leader election cannot use the database ({type(exc).__name__})")


class AdvisoryLeaderLock:
    """Leadership as PostgreSQL's advisory lock ``LEADER_LOCK``, held by one session."""

    def __init__(self, url: URL | str, *, check: float, name: str) -> None:
        settings = {
            "application_name": f"usage-collector leader {name}"[:63],
            "idle_session_timeout": str(int(check * 3 * 1000)),
            "tcp_keepalives_idle": str(KEEPALIVE_IDLE),
            "tcp_keepalives_interval": str(KEEPALIVE_INTERVAL),
            "tcp_keepalives_count": str(KEEPALIVE_COUNT),
        }
        self._engine = create_async_engine(
            url,
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={"server_settings": settings, "command_timeout": check, "timeout": check},
        )
        self._conn: AsyncConnection | None = None

    async def try_acquire(self) -> bool:
        """Take the lock if no other session holds it; False if one does."""
        try:
            if self._conn is None:
                self._conn = await self._engine.connect()
            taken = (await self._conn.execute(_TRY, {"key": LEADER_LOCK})).scalar_one()
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            await self._drop()
            raise _unavailable(exc) from exc
        return bool(taken)

    async def confirm(self) -> bool:
        """Whether this session still holds the lock; False once the session is gone."""
        if self._conn is None:
            return False
        try:
            held = (await self._conn.execute(_HELD, {"key": LEADER_LOCK})).scalar_one()
        except (SQLAlchemyError, OSError, TimeoutError):
            await self._drop()
            return False
        if not held:
            await self._drop()
        return bool(held)

    async def release(self) -> None:
        """Give the lock up, and the session with it."""
        if self._conn is not None:
            # Closing the session below frees the lock too, should this fail.
            with contextlib.suppress(SQLAlchemyError, OSError, TimeoutError):
                await self._conn.execute(_UNLOCK, {"key": LEADER_LOCK})
        await self._drop()

    async def close(self) -> None:
        await self.release()
        await self._engine.dispose()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            await conn.close()
        except (SQLAlchemyError, OSError, TimeoutError):
            with contextlib.suppress(SQLAlchemyError, OSError, TimeoutError):
                await conn.invalidate()


class SingleProcessLock:
    """SQLite: the one process always leads."""

    async def try_acquire(self) -> bool:
        return True

    async def confirm(self) -> bool:
        return True

    async def release(self) -> None:
        return None

    async def close(self) -> None:
        return None
