"""The transactional outbox: forwards written with their report, batched, claimed and settled.

Invariants the database enforces: one forward per (report, metric); at most one open batch per
(customer, metric), so delivery is in window order and a resent batch never gains members.

A claimed batch is leased to one worker (``lease_owner``) until ``lease_until``; only a lapsed
lease can be claimed again, and only the owner renews or settles. With ``database_clock`` (every
replica on PostgreSQL) lease times come from the database's ``clock_timestamp()``, so replicas
whose clocks disagree still agree on when a lease lapses. ``lease_owner`` stays set until the
batch is settled: it marks a batch that may have reached Stripe.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Interval, and_, bindparam, exists, func, literal, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from collector.adapters.db import formation, queue_state
from collector.adapters.db.outbox_records import (
    Formation,
    MeterState,
    MetricDelivery,
    NewBatch,
    PendingForward,
    Planner,
    empty_state,
    state_from_row,
)
from collector.adapters.db.queue_state import QueueSnapshot, UnlinkedCustomer
from collector.adapters.db.tables import (
    BATCHES,
    FORWARDS,
    LINKS,
    PERIOD_INDEXED,
    STATE,
    BatchRow,
    UtcDateTime,
)
from collector.errors import Conflict, DatabaseUnavailable


class RefusedAsTooOld(Conflict):
    """Stripe refused this batch's timestamp for age; resending it can only fail again."""

    code = "refused_as_too_old"


__all__ = [
    "Formation",
    "MeterState",
    "MetricDelivery",
    "NewBatch",
    "OutboxStore",
    "PendingForward",
    "Planner",
    "QueueSnapshot",
    "RefusedAsTooOld",
    "UnlinkedCustomer",
    "metric_text",
    "outbox_metrics",
]


def metric_text(value: float) -> str:
    """A metric value as an outbox row stores it: ``repr`` of a float, ``str`` of an int.

    ``json.dumps`` spells numbers the same way, which PostgreSQL's one-statement write relies on.
    """
    return repr(value) if isinstance(value, float) else str(value)


def outbox_metrics(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A report row's metrics as its outbox rows list them: by name, each value spelled."""
    return [(name, metric_text(value)) for name, value in sorted(report["metrics"].items())]


class OutboxStore:
    """Reads and changes the outbox; every method is one short transaction."""

    def __init__(self, engine: AsyncEngine, *, database_clock: bool = False) -> None:
        self._engine = engine
        self._database_clock = database_clock

    def _lease_now(self, conn: AsyncConnection, now: datetime) -> ColumnElement[datetime]:
        """The time leases are read and written at: the database's clock, or ``now``."""
        if self._database_clock and conn.dialect.name == "postgresql":
            return func.clock_timestamp()
        return literal(now, UtcDateTime())

    def _lease_end(
        self, conn: AsyncConnection, now: datetime, lease: timedelta
    ) -> ColumnElement[datetime] | datetime:
        if self._database_clock and conn.dialect.name == "postgresql":
            return func.clock_timestamp() + literal(lease, Interval())
        return now + lease

    async def groups_to_form(
        self, limit: int, exclude: Collection[str] = ()
    ) -> list[tuple[str, str]]:
        """(customer, metric) pairs of linked customers with waiting forwards and no open batch.

        Usage of a customer not linked to Stripe waits unbatched: its billing periods are only
        known once it is linked. ``exclude`` names customers known to be waiting for a period.
        """
        open_batch = exists().where(
            BATCHES.c.customer_id == FORWARDS.c.customer_id,
            BATCHES.c.metric == FORWARDS.c.metric,
            BATCHES.c.state == "pending",
        )
        linked = exists().where(LINKS.c.customer_id == FORWARDS.c.customer_id)
        statement = (
            select(FORWARDS.c.customer_id, FORWARDS.c.metric)
            .where(FORWARDS.c.state == "pending", ~open_batch, linked)
            .group_by(FORWARDS.c.customer_id, FORWARDS.c.metric)
            .order_by(func.min(FORWARDS.c.id))
            .limit(limit)
        )
        if exclude:
            statement = statement.where(FORWARDS.c.customer_id.not_in(sorted(exclude)))
        async with self._engine.connect() as conn:
            return [(r.customer_id, r.metric) for r in (await conn.execute(statement)).all()]

    async def form(
        self,
        groups: Sequence[tuple[str, str]],
        planner: Planner,
        semantics_of: dict[str, str],
        *,
        max_members: int,
        now: datetime,
    ) -> tuple[list[Formation], set[str]]:
        """Under the formation lock, let ``planner`` turn each group's oldest forwards into a batch.

        One transaction for all ``groups``. Returns the outcomes, and the customers whose
        forwards wait because their billing period is not known.
        """
        if not groups:
            return [], set()
        async with self._engine.begin() as conn:
            return await formation.form(
                conn, groups, planner, semantics_of, max_members=max_members, now=now
            )

    async def _has_open_batch(self, conn: AsyncConnection, customer_id: str, metric: str) -> bool:
        found = await conn.execute(
            select(BATCHES.c.id)
            .where(
                BATCHES.c.customer_id == customer_id,
                BATCHES.c.metric == metric,
                BATCHES.c.state == "pending",
            )
            .limit(1)
        )
        return found.first() is not None

    async def claim_due(
        self, owner: str, now: datetime, lease: timedelta, limit: int
    ) -> list[BatchRow]:
        """Lease open batches that are due and not leased; other replicas skip locked rows."""
        async with self._engine.begin() as conn:
            query = (
                select(BATCHES.c.id)
                .where(
                    BATCHES.c.state == "pending",
                    BATCHES.c.next_attempt_at <= now,
                    (BATCHES.c.lease_until.is_(None))
                    | (BATCHES.c.lease_until < self._lease_now(conn, now)),
                )
                .order_by(BATCHES.c.next_attempt_at, BATCHES.c.id)
                .limit(limit)
            )
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            ids = [r.id for r in (await conn.execute(query)).all()]
            if not ids:
                return []
            await conn.execute(
                update(BATCHES)
                .where(BATCHES.c.id.in_(ids))
                .values(lease_owner=owner, lease_until=self._lease_end(conn, now, lease))
            )
            rows = (
                await conn.execute(
                    select(BATCHES).where(BATCHES.c.id.in_(ids)).order_by(BATCHES.c.id)
                )
            ).all()
            return [BatchRow(**dict(r._mapping)) for r in rows]

    async def acknowledge_many(
        self,
        delivered: Sequence[tuple[BatchRow, int]],
        owner: str,
        now: datetime,
        advance: Callable[[MeterState, BatchRow], MeterState],
    ) -> set[int]:
        """Stripe accepted these batches: mark them and their members sent in one transaction.

        Only batches this worker still leases are settled; their ids are returned. ``advance``
        maps a period's delivered state before a batch to the state after it.
        """
        if not delivered:
            return set()
        by_id = {batch.id: (batch, status) for batch, status in delivered}
        async with self._engine.begin() as conn:
            owned = {
                row.id
                for row in (
                    await conn.execute(
                        select(BATCHES.c.id).where(
                            BATCHES.c.id.in_(by_id),
                            BATCHES.c.state == "pending",
                            BATCHES.c.lease_owner == owner,
                        )
                    )
                ).all()
            }
            if not owned:
                return set()
            await conn.execute(
                update(BATCHES)
                .where(BATCHES.c.id == bindparam("b_id"))
                .values(
                    state="sent",
                    sent_at=now,
                    last_status=bindparam("b_status"),
                    last_error=None,
                    lease_owner=None,
                    lease_until=None,
                    attempts=BATCHES.c.attempts + 1,
                ),
                [{"b_id": i, "b_status": by_id[i][1]} for i in sorted(owned)],
            )
            await conn.execute(
                update(FORWARDS).where(FORWARDS.c.batch_id.in_(owned)).values(state="sent")
            )
            batches = [by_id[i][0] for i in sorted(owned) if by_id[i][0].period_id is not None]
            keys = {(b.period_id, b.metric) for b in batches}
            states: dict[tuple[int | None, str], MeterState] = {}
            if keys:
                rows = await conn.execute(
                    select(STATE).where(tuple_(STATE.c.period_id, STATE.c.metric).in_(keys))
                )
                states = {(r.period_id, r.metric): state_from_row(r) for r in rows.all()}
            for batch in batches:
                assert batch.period_id is not None
                key = (batch.period_id, batch.metric)
                before = states.get(key) or empty_state(
                    batch.period_id,
                    batch.customer_id,
                    batch.metric,
                    batch.period_start,
                    batch.period_end,
                )
                states[key] = advance(before, batch)
            await formation.save_states(conn, [states[k] for k in keys])
            return owned

    async def renew_leases(
        self, owner: str, ids: Collection[int], now: datetime, lease: timedelta
    ) -> set[int]:
        """Extend ``owner``'s leases on ``ids`` by ``lease`` from now; the ids it still holds.

        Another worker can only have claimed a batch after its lease lapsed; this statement and
        that claim serialise on the row, so a batch is renewed only while nobody else holds it.
        """
        if not ids:
            return set()
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(BATCHES)
                .where(
                    BATCHES.c.id.in_(sorted(ids)),
                    BATCHES.c.state == "pending",
                    BATCHES.c.lease_owner == owner,
                )
                .values(lease_until=self._lease_end(conn, now, lease))
                .returning(BATCHES.c.id)
            )
            return {int(row.id) for row in result.all()}

    async def release_leases(self) -> int:
        """Free every lease; only for a database with a single worker (SQLite) at its start.

        The owner stays recorded: the dead worker may have sent the batch, so a relink must
        complete it rather than dissolve it.
        """
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(BATCHES)
                .where(BATCHES.c.state == "pending", BATCHES.c.lease_until.is_not(None))
                .values(lease_until=None)
            )
            return int(result.rowcount or 0)

    async def reschedule(
        self,
        batch: BatchRow,
        owner: str,
        next_attempt_at: datetime,
        status: int | None,
        error: str,
        *,
        count_attempt: bool = True,
    ) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(BATCHES)
                .where(
                    BATCHES.c.id == batch.id,
                    BATCHES.c.state == "pending",
                    BATCHES.c.lease_owner == owner,
                )
                .values(
                    next_attempt_at=next_attempt_at,
                    last_status=status,
                    last_error=error[:1000],
                    lease_owner=None,
                    lease_until=None,
                    attempts=BATCHES.c.attempts + (1 if count_attempt else 0),
                )
            )

    async def dead_letter(
        self,
        batch: BatchRow,
        owner: str | None,
        status: int | None,
        error: str,
        reason: str = "rejected",
    ) -> None:
        """Park a batch that retrying cannot fix, visibly, with Stripe's message."""
        async with self._engine.begin() as conn:
            condition = and_(BATCHES.c.id == batch.id, BATCHES.c.state == "pending")
            if owner is not None:
                condition = and_(condition, BATCHES.c.lease_owner == owner)
            done = await conn.execute(
                update(BATCHES)
                .where(condition)
                .values(
                    state="dead",
                    dead_reason=reason,
                    last_status=status,
                    last_error=error[:1000],
                    lease_owner=None,
                    lease_until=None,
                    attempts=BATCHES.c.attempts + 1,
                )
            )
            if done.rowcount == 1:
                await conn.execute(
                    update(FORWARDS).where(FORWARDS.c.batch_id == batch.id).values(state="dead")
                )

    async def retry_dead(self, batch_id: int, now: datetime) -> BatchRow | None:
        """Reopen a dead batch with its identifier and members unchanged."""
        async with self._engine.begin() as conn:
            row = (await conn.execute(select(BATCHES).where(BATCHES.c.id == batch_id))).first()
            if row is None or row.state != "dead":
                return None
            if row.dead_reason == "too_old":
                raise RefusedAsTooOld(
                    f"Stripe refused batch {batch_id}'s timestamp as older than 35 days; it is "
                    "never sent again. Bill it into the current period with "
                    f"POST /api/forwarding/batches/{batch_id}/rebill"
                )
            if await self._has_open_batch(conn, row.customer_id, row.metric):
                raise DatabaseUnavailable(
                    "another batch for this customer and metric is open; retry after it settles"
                )
            await conn.execute(
                update(BATCHES)
                .where(BATCHES.c.id == batch_id)
                .values(state="pending", dead_reason=None, next_attempt_at=now, attempts=0)
            )
            await conn.execute(
                update(FORWARDS).where(FORWARDS.c.batch_id == batch_id).values(state="batched")
            )
            fresh = (await conn.execute(select(BATCHES).where(BATCHES.c.id == batch_id))).one()
            return BatchRow(**dict(fresh._mapping))

    async def state(self, period_id: int, metric: str) -> MeterState | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(STATE).where(STATE.c.period_id == period_id, STATE.c.metric == metric)
                )
            ).first()
            return state_from_row(row) if row else None

    async def oldest_waiting_by_customer(self, limit: int = 100) -> list[tuple[str, datetime]]:
        """Customers with unbatched forwards and their oldest waiting window end, oldest first."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(FORWARDS.c.customer_id, func.min(FORWARDS.c.window_end).label("oldest"))
                .where(FORWARDS.c.state == "pending")
                .group_by(FORWARDS.c.customer_id)
                .order_by(func.min(FORWARDS.c.window_end))
                .limit(limit)
            )
            return [(r.customer_id, r.oldest) for r in rows.all()]

    async def billed_in(self, period_id: int) -> dict[str, list[PendingForward]]:
        """Every window billed in a period (sent, unchanged, or in a batch), by metric."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(FORWARDS)
                .where(
                    FORWARDS.c.period_id == period_id,
                    PERIOD_INDEXED,
                    FORWARDS.c.state.in_(formation.BILLED),
                )
                .order_by(FORWARDS.c.window_end, FORWARDS.c.id)
            )
            billed: dict[str, list[PendingForward]] = {}
            for row in rows.all():
                billed.setdefault(row.metric, []).append(formation.pending_of(row))
            return billed

    async def waiting_for(self, customer_id: str) -> int:
        """How many of one customer's forwards Stripe has not acknowledged yet."""
        async with self._engine.connect() as conn:
            result = await conn.execute(
                select(func.count()).where(
                    FORWARDS.c.customer_id == customer_id,
                    FORWARDS.c.state.in_(("pending", "batched")),
                )
            )
            return int(result.scalar_one())

    async def deliveries(self, customer_id: str) -> dict[str, MetricDelivery]:
        """Per metric of one customer: forwards still waiting, and the newest acknowledgement."""
        async with self._engine.connect() as conn:
            waiting = await conn.execute(
                select(FORWARDS.c.metric, func.count())
                .where(
                    FORWARDS.c.customer_id == customer_id,
                    FORWARDS.c.state.in_(("pending", "batched")),
                )
                .group_by(FORWARDS.c.metric)
            )
            sent = await conn.execute(
                select(BATCHES.c.metric, func.max(BATCHES.c.sent_at))
                .where(BATCHES.c.customer_id == customer_id, BATCHES.c.sent_at.is_not(None))
                .group_by(BATCHES.c.metric)
            )
            counts = {m: int(n) for m, n in waiting.all()}
            newest = {m: at for m, at in sent.all()}
        return {
            metric: MetricDelivery(counts.get(metric, 0), newest.get(metric))
            for metric in set(counts) | set(newest)
        }

    async def counts(self) -> dict[str, dict[str, int]]:
        """Forwards and batches by state."""
        async with self._engine.connect() as conn:
            forwards = (
                await conn.execute(
                    select(FORWARDS.c.state, func.count()).group_by(FORWARDS.c.state)
                )
            ).all()
            batches = (
                await conn.execute(select(BATCHES.c.state, func.count()).group_by(BATCHES.c.state))
            ).all()
        return {
            "forwards": {s: int(n) for s, n in forwards},
            "batches": {s: int(n) for s, n in batches},
        }

    async def batches(
        self, state: str | None = None, customer_id: str | None = None, limit: int = 100
    ) -> list[BatchRow]:
        query = select(BATCHES).order_by(BATCHES.c.id.desc()).limit(limit)
        if state is not None:
            query = query.where(BATCHES.c.state == state)
        if customer_id is not None:
            query = query.where(BATCHES.c.customer_id == customer_id)
        async with self._engine.connect() as conn:
            return [BatchRow(**dict(r._mapping)) for r in (await conn.execute(query)).all()]

    async def oldest_waiting(self) -> datetime | None:
        """Creation time of the oldest forward not yet acknowledged, for lag metrics."""
        async with self._engine.connect() as conn:
            result = await conn.execute(
                select(func.min(FORWARDS.c.created_at)).where(
                    FORWARDS.c.state.in_(("pending", "batched"))
                )
            )
            oldest: datetime | None = result.scalar_one_or_none()
            return oldest

    async def queue_snapshot(self) -> QueueSnapshot:
        """What waits, since when and for how many customers (the queue gauges' one read)."""
        async with self._engine.connect() as conn:
            return await queue_state.snapshot(conn)

    async def unlinked_customers(self, limit: int = 50) -> list[UnlinkedCustomer]:
        """Customers whose usage waits without a link to Stripe, oldest waiting first."""
        async with self._engine.connect() as conn:
            return await queue_state.unlinked_customers(conn, limit)
