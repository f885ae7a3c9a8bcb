"""Rate-limit state every replica shares, on PostgreSQL: token buckets and call slots.

Each operation is one statement, so the row lock PostgreSQL takes for it is all the coordination
there is: two replicas that take from one bucket at once are serialised on its row, and two that
ask for a slot at once never get the same one (``FOR UPDATE SKIP LOCKED``).

Times are seconds on one shared timeline: the database's ``clock_timestamp()`` when ``now`` is
``None`` (production, so replicas whose clocks disagree still agree on every bucket), or the
``now`` the caller passes (tests on a manual clock). A bucket's stamp never moves backwards, so a
statement that read the clock just before another one committed cannot refill twice.

SQLite has neither ``SKIP LOCKED`` nor arrays: it runs one replica and keeps its limits in memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from collector.adapters.db.driver_transaction import KeptConnection
from collector.errors import DatabaseUnavailable

# The f-strings below only splice in these constant fragments; every value is a bound parameter.
_CLOCK = (
    "clock AS MATERIALIZED (SELECT coalesce(CAST(:now AS float8), "
    "CAST(extract(epoch FROM clock_timestamp()) AS float8)) AS now)"
)
_REFILLED = (
    "least(CAST(:burst AS float8), "
    "b.tokens + greatest(0, excluded.stamp - b.stamp) * CAST(:rate AS float8))"
)

# ``granted`` carries the requested count in through ``excluded`` (capped at the burst, which
# changes nothing: no statement can grant more than the burst) and the granted count back out.
# It runs on asyncpg itself, being on every request's path, so its parameters are numbered:
# $1 now, $2 burst, $3 rate, $4 the keys, $5 their counts.
_TAKE_CLOCK = _CLOCK.replace(":now", "$1")
_TAKE_REFILLED = _REFILLED.replace(":burst", "$2").replace(":rate", "$3")
_TAKE = f"""
    WITH {_TAKE_CLOCK}
    INSERT INTO rate_buckets AS b (key, tokens, stamp, granted)
    SELECT
        wanted.key,
        CAST($2 AS float8) - least(wanted.n, floor(CAST($2 AS float8))),
        clock.now,
        least(wanted.n, floor(CAST($2 AS float8)))
    FROM unnest(CAST($4 AS text[]), CAST($5 AS integer[])) AS wanted(key, n), clock
    ORDER BY wanted.key
    ON CONFLICT (key) DO UPDATE SET
        granted = least(excluded.granted, floor({_TAKE_REFILLED})),
        tokens = {_TAKE_REFILLED} - least(excluded.granted, floor({_TAKE_REFILLED})),
        stamp = greatest(b.stamp, excluded.stamp)
    RETURNING b.key, b.granted, b.tokens
    """  # noqa: S608
_DROPPED = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)
"""The kept connection is gone (closed by the server, a firewall, or a restart).

A statement sent just as the server's notice that it ended the session arrives fails with
``InternalClientError`` ("another operation is in progress"): the protocol is still consuming
that error, and the connection cannot be used again either.
"""
_SHUT_DOWN = "57"
"""SQLSTATE class of a session the server ended (``pg_terminate_backend``, a shutdown)."""


_PREPARE_SLOTS = text(
    """
    INSERT INTO rate_slots (name, slot, busy_until)
    SELECT :name, number, 0 FROM generate_series(0, :capacity - 1) AS number
    ON CONFLICT DO NOTHING
    """
)

_ACQUIRE = text(
    f"""
    WITH {_CLOCK},
    free AS (
        SELECT s.slot FROM rate_slots AS s, clock
        WHERE s.name = :name AND s.slot < :capacity AND s.busy_until <= clock.now
        ORDER BY s.slot
        LIMIT 1
        FOR UPDATE OF s SKIP LOCKED
    ),
    taken AS (
        UPDATE rate_slots AS s SET holder = :holder, busy_until = clock.now + :lease
        FROM free, clock
        WHERE s.name = :name AND s.slot = free.slot
        RETURNING s.slot
    )
    SELECT
        (SELECT slot FROM taken) AS slot,
        (SELECT min(busy_until) FROM rate_slots WHERE name = :name AND slot < :capacity)
            - (SELECT now FROM clock) AS wait
    """  # noqa: S608
)

_RELEASE = text(
    f"""
    WITH {_CLOCK}
    UPDATE rate_slots AS s SET holder = NULL, busy_until = clock.now + :hold
    FROM clock
    WHERE s.name = :name AND s.slot = :slot AND s.holder = :holder
    RETURNING s.slot
    """  # noqa: S608
)


def _dropped(exc: BaseException) -> bool:
    if isinstance(exc, asyncpg.PostgresError):
        return str(getattr(exc, "sqlstate", "") or "").startswith(_SHUT_DOWN) or isinstance(
            exc, asyncpg.PostgresConnectionError
        )
    return isinstance(exc, _DROPPED)


def _unavailable(exc: BaseException) -> DatabaseUnavailable:
    return DatabaseUnavailable(
        f"the database is unavailable for rate limits ({type(exc).__name__})"
    )


@dataclass(frozen=True)
class Taken:
    """One bucket's answer: how many of the requests got a token, and what is left after."""

    granted: int
    tokens: float


@dataclass(frozen=True)
class SlotAnswer:
    """The slot a caller now holds, or ``None`` and the seconds until the next one frees."""

    slot: int | None
    wait: float


class RateBucketStore:
    """``rate_buckets`` and ``rate_slots``; database errors leave as ``DatabaseUnavailable``.

    ``take`` runs on the request path, so it keeps one connection of the pool for itself: a
    fresh checkout would cost a ping and a reset, three times the statement's own round trip.
    The slot operations (a few per Stripe call) check out as usual. ``close`` gives the kept
    connection back; call it before the engine is disposed.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        # Every operation is one statement, atomic on its own: no BEGIN and COMMIT round trips.
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._kept = KeptConnection(self._engine)
        self._taking = asyncio.Lock()

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._engine.connect() as conn:
                yield conn
        except (SQLAlchemyError, OSError) as exc:
            raise _unavailable(exc) from exc

    async def take(
        self, wanted: Mapping[str, int], rate: float, burst: float, now: float | None
    ) -> dict[str, Taken]:
        """``wanted[key]`` requests from each bucket, in one statement for all of them.

        Rows are locked in key order, so two replicas' statements never deadlock.
        """
        keys = sorted(wanted)
        counts = [wanted[key] for key in keys]
        async with self._taking:
            for attempt in (1, 2):
                try:
                    driver = await self._kept.driver()
                    rows = await driver.fetch(_TAKE, now, burst, rate, keys, counts)
                    break
                except (SQLAlchemyError, asyncpg.PostgresError, *_DROPPED) as exc:
                    await self.close()
                    # A kept connection the server or a firewall closed while it sat idle: once
                    # more on a fresh one. (Had the statement run, the retry takes twice: never
                    # more than allowed.)
                    if attempt == 2 or not _dropped(exc):
                        raise _unavailable(exc) from exc
        return {key: Taken(int(granted), float(tokens)) for key, granted, tokens in rows}

    async def close(self) -> None:
        """Give the connection ``take`` keeps back to the pool (a broken one is discarded)."""
        await self._kept.release()

    async def prepare_slots(self, name: str, capacity: int) -> None:
        """Create slots ``0 .. capacity-1`` of ``name`` if they do not exist yet."""
        async with self._begin() as conn:
            await conn.execute(_PREPARE_SLOTS, {"name": name, "capacity": capacity})

    async def acquire_slot(
        self, name: str, capacity: int, holder: str, lease: float, now: float | None
    ) -> SlotAnswer:
        """Hold a free slot for ``lease`` seconds (until released), or say when one frees."""
        params = {
            "name": name,
            "capacity": capacity,
            "holder": holder,
            "lease": lease,
            "now": now,
        }
        async with self._begin() as conn:
            row = (await conn.execute(_ACQUIRE, params)).one()
        wait = float(row.wait) if row.wait is not None else 0.0
        return SlotAnswer(None if row.slot is None else int(row.slot), wait)

    async def release_slot(
        self, name: str, slot: int, holder: str, hold: float, now: float | None
    ) -> bool:
        """Keep the slot busy ``hold`` seconds from now; False if ``holder`` had lost it."""
        params = {"name": name, "slot": slot, "holder": holder, "hold": hold, "now": now}
        async with self._begin() as conn:
            return (await conn.execute(_RELEASE, params)).first() is not None
