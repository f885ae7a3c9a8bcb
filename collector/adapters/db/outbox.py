"""The transactional outbox: forwards written with their report, batched, claimed and settled.

Invariants the database enforces: one forward per (report, metric); at most one open batch per
(customer, metric), so delivery is in window order and a resent batch never gains members.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, and_, bindparam, exists, func, select, text, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from collector.adapters.db.outbox_records import (
    Decide,
    Formation,
    MeterState,
    NewBatch,
    PendingForward,
    state_from_row,
)
from collector.adapters.db.tables import (
    BatchRow,
    BillingPeriodRow,
    CustomerLinkRow,
    ForwardRow,
    MeterStateRow,
    StoredReport,
)
from collector.errors import DatabaseUnavailable

__all__ = [
    "Decide",
    "Formation",
    "MeterState",
    "NewBatch",
    "OutboxStore",
    "PendingForward",
    "enqueue",
]

FORWARDS: Table = ForwardRow.__table__  # type: ignore[assignment]
BATCHES: Table = BatchRow.__table__  # type: ignore[assignment]
STATE: Table = MeterStateRow.__table__  # type: ignore[assignment]
PERIODS: Table = BillingPeriodRow.__table__  # type: ignore[assignment]
LINKS: Table = CustomerLinkRow.__table__  # type: ignore[assignment]
FORMATION_LOCK = 0x55534147  # any constant: one batch former at a time across replicas


def _upsert(conn: AsyncConnection, table: Table) -> Any:
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(table)


async def enqueue(conn: AsyncConnection, reports: Sequence[StoredReport], now: datetime) -> None:
    """Write one forward per metric of each new report, in the report's own transaction."""
    rows = [
        {
            "report_pk": report.id,
            "report_id": report.report_id,
            "customer_id": report.customer_id,
            "metric": name,
            "window_start": report.window_start,
            "window_end": report.window_end,
            "value": repr(value) if isinstance(value, float) else str(value),
            "state": "pending",
            "batch_id": None,
            "created_at": now,
        }
        for report in reports
        for name, value in sorted(report.metrics.items())
    ]
    if rows:
        await conn.execute(FORWARDS.insert(), rows)


class OutboxStore:
    """Reads and changes the outbox; every method is one short transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def _lock_formation(self, conn: AsyncConnection) -> bool:
        if conn.dialect.name != "postgresql":
            return True
        result = await conn.execute(
            text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": FORMATION_LOCK}
        )
        return bool(result.scalar_one())

    async def groups_to_form(self, limit: int) -> list[tuple[str, str]]:
        """(customer, metric) pairs of linked customers with waiting forwards and no open batch.

        Usage of a customer not linked to Stripe waits unbatched: its billing periods are only
        known once it is linked.
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
        async with self._engine.connect() as conn:
            return [(r.customer_id, r.metric) for r in (await conn.execute(statement)).all()]

    async def form(
        self, groups: Sequence[tuple[str, str]], decide: Decide, *, max_members: int
    ) -> list[Formation]:
        """Under the formation lock, let ``decide`` turn each group's oldest forwards into a batch.

        One transaction for all ``groups``, with set-based reads and writes. ``decide`` gets a
        group's waiting members (oldest window first), the customer's known billing periods, and
        the delivered state of a period by its start.
        """
        if not groups:
            return []
        async with self._engine.begin() as conn:
            if not await self._lock_formation(conn):
                return []
            pairs = tuple_(FORWARDS.c.customer_id, FORWARDS.c.metric)
            busy = {
                (r.customer_id, r.metric)
                for r in (
                    await conn.execute(
                        select(BATCHES.c.customer_id, BATCHES.c.metric).where(
                            BATCHES.c.state == "pending",
                            tuple_(BATCHES.c.customer_id, BATCHES.c.metric).in_(groups),
                        )
                    )
                ).all()
            }
            free = [g for g in groups if g not in busy]
            if not free:
                return []
            waiting: dict[tuple[str, str], list[PendingForward]] = {g: [] for g in free}
            rows = await conn.execute(
                select(FORWARDS)
                .where(FORWARDS.c.state == "pending", pairs.in_(free))
                .order_by(
                    FORWARDS.c.customer_id, FORWARDS.c.metric, FORWARDS.c.window_end, FORWARDS.c.id
                )
            )
            for r in rows.all():
                members = waiting[(r.customer_id, r.metric)]
                if len(members) < max_members:
                    members.append(
                        PendingForward(
                            r.id,
                            r.report_id,
                            r.customer_id,
                            r.metric,
                            r.window_end,
                            Decimal(r.value),
                        )
                    )
            customers = sorted({c for c, _ in free})
            periods: dict[str, list[tuple[datetime, datetime]]] = {c: [] for c in customers}
            for r in (
                await conn.execute(select(PERIODS).where(PERIODS.c.customer_id.in_(customers)))
            ).all():
                periods[r.customer_id].append((r.period_start, r.period_end))
            states = {
                (r.customer_id, r.metric, r.period_start): state_from_row(r)
                for r in (
                    await conn.execute(
                        select(STATE).where(tuple_(STATE.c.customer_id, STATE.c.metric).in_(free))
                    )
                ).all()
            }
            outcomes = []
            for customer_id, metric in free:
                members = waiting[(customer_id, metric)]
                if not members:
                    continue

                def state_of(start: datetime, c: str = customer_id, m: str = metric) -> MeterState:
                    return states.get((c, m, start)) or MeterState(
                        c, m, start, start, Decimal(0), 0, None, None, None, 0
                    )

                outcome = decide(members, periods[customer_id], state_of)
                if outcome is not None:
                    outcomes.append(outcome)
            await self._apply(conn, outcomes)
            return outcomes

    async def _apply(self, conn: AsyncConnection, outcomes: list[Formation]) -> None:
        batches = [o.batch for o in outcomes if o.batch is not None]
        if batches:
            inserted = await conn.execute(
                BATCHES.insert().returning(BATCHES.c.id, sort_by_parameter_order=True),
                [_batch_row(b) for b in batches],
            )
            ids = [r.id for r in inserted.all()]
            await conn.execute(
                update(FORWARDS)
                .where(FORWARDS.c.id == bindparam("f_id"), FORWARDS.c.state == "pending")
                .values(state="batched", batch_id=bindparam("f_batch")),
                [
                    {"f_id": member, "f_batch": batch_id}
                    for batch, batch_id in zip(batches, ids, strict=True)
                    for member in batch.member_ids
                ],
            )
        for settled_as in ("sent", "superseded"):
            ids_settled = [i for o in outcomes if o.settled_as == settled_as for i in o.settled_ids]
            if ids_settled:
                await conn.execute(
                    update(FORWARDS)
                    .where(FORWARDS.c.id.in_(ids_settled), FORWARDS.c.state == "pending")
                    .values(state=settled_as)
                )
        await self._save_states(conn, [o.state for o in outcomes if o.state is not None])

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

    async def _save_states(self, conn: AsyncConnection, states: Sequence[MeterState]) -> None:
        """Upsert delivered states in one statement."""
        if not states:
            return
        rows = [
            {
                "customer_id": state.customer_id,
                "metric": state.metric,
                "period_start": state.period_start,
                "period_end": state.period_end,
                "raw_total": str(state.raw_total),
                "billed_total": state.billed_total,
                "last_value": str(state.last_value) if state.last_value is not None else None,
                "newest_window_end": state.newest_window_end,
                "last_event_timestamp": state.last_event_timestamp,
                "calls": state.calls,
                "updated_at": state.newest_window_end or state.period_start,
            }
            for state in states
        ]
        statement = _upsert(conn, STATE)
        keys = ("customer_id", "metric", "period_start")
        statement = statement.on_conflict_do_update(
            index_elements=list(keys),
            set_={k: statement.excluded[k] for k in rows[0] if k not in keys},
        )
        await conn.execute(statement, rows)

    async def claim_due(
        self, owner: str, now: datetime, lease: timedelta, limit: int
    ) -> list[BatchRow]:
        """Lease open batches that are due; on PostgreSQL other replicas skip the locked ones."""
        async with self._engine.begin() as conn:
            query = (
                select(BATCHES.c.id)
                .where(
                    BATCHES.c.state == "pending",
                    BATCHES.c.next_attempt_at <= now,
                    (BATCHES.c.lease_until.is_(None)) | (BATCHES.c.lease_until < now),
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
                .values(lease_owner=owner, lease_until=now + lease)
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
            batches = [by_id[i][0] for i in sorted(owned)]
            keys = {(b.customer_id, b.metric, b.period_start) for b in batches}
            rows = await conn.execute(
                select(STATE).where(
                    tuple_(STATE.c.customer_id, STATE.c.metric, STATE.c.period_start).in_(keys)
                )
            )
            states = {
                (r.customer_id, r.metric, r.period_start): state_from_row(r) for r in rows.all()
            }
            for batch in batches:
                key = (batch.customer_id, batch.metric, batch.period_start)
                before = states.get(key) or MeterState(
                    batch.customer_id,
                    batch.metric,
                    batch.period_start,
                    batch.period_end,
                    Decimal(0),
                    0,
                    None,
                    None,
                    None,
                    0,
                )
                states[key] = advance(before, batch)
            await self._save_states(conn, [states[k] for k in keys])
            return owned

    async def release_leases(self) -> int:
        """Free every lease; only for a database with a single worker (SQLite) at its start."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(BATCHES)
                .where(BATCHES.c.state == "pending", BATCHES.c.lease_owner.is_not(None))
                .values(lease_owner=None, lease_until=None)
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
        self, batch: BatchRow, owner: str | None, status: int | None, error: str
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

    async def reject_delivered(self, identifier: str, error: str) -> int:
        """Stripe reported a delivered event as invalid later: park its batch as dead.

        An increment's contribution leaves the delivered state, so a retry bills it once.
        """
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(select(BATCHES).where(BATCHES.c.identifier == identifier))
            ).first()
            if row is None or row.state == "dead":
                return 0
            await conn.execute(
                update(BATCHES)
                .where(BATCHES.c.id == row.id)
                .values(state="dead", last_error=error[:1000], lease_owner=None, lease_until=None)
            )
            await conn.execute(
                update(FORWARDS).where(FORWARDS.c.batch_id == row.id).values(state="dead")
            )
            if row.state == "sent" and row.semantics == "increment":
                state = (
                    await conn.execute(
                        select(STATE).where(
                            STATE.c.customer_id == row.customer_id,
                            STATE.c.metric == row.metric,
                            STATE.c.period_start == row.period_start,
                        )
                    )
                ).first()
                if state is not None:
                    await conn.execute(
                        update(STATE)
                        .where(
                            STATE.c.customer_id == row.customer_id,
                            STATE.c.metric == row.metric,
                            STATE.c.period_start == row.period_start,
                        )
                        .values(
                            raw_total=str(Decimal(state.raw_total) - Decimal(row.raw_value)),
                            billed_total=state.billed_total - row.quantity,
                        )
                    )
            return 1

    async def retry_dead(self, batch_id: int, now: datetime) -> BatchRow | None:
        """Reopen a dead batch with its identifier and members unchanged."""
        async with self._engine.begin() as conn:
            row = (await conn.execute(select(BATCHES).where(BATCHES.c.id == batch_id))).first()
            if row is None or row.state != "dead":
                return None
            if await self._has_open_batch(conn, row.customer_id, row.metric):
                raise DatabaseUnavailable(
                    "another batch for this customer and metric is open; retry after it settles"
                )
            await conn.execute(
                update(BATCHES)
                .where(BATCHES.c.id == batch_id)
                .values(state="pending", next_attempt_at=now, attempts=0)
            )
            await conn.execute(
                update(FORWARDS).where(FORWARDS.c.batch_id == batch_id).values(state="batched")
            )
            fresh = (await conn.execute(select(BATCHES).where(BATCHES.c.id == batch_id))).one()
            return BatchRow(**dict(fresh._mapping))

    async def state(
        self, customer_id: str, metric: str, period_start: datetime
    ) -> MeterState | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(STATE).where(
                        STATE.c.customer_id == customer_id,
                        STATE.c.metric == metric,
                        STATE.c.period_start == period_start,
                    )
                )
            ).first()
            return state_from_row(row) if row else None

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


def _batch_row(batch: NewBatch) -> dict[str, Any]:
    return {
        "customer_id": batch.customer_id,
        "metric": batch.metric,
        "semantics": batch.semantics,
        "mode": batch.mode,
        "period_start": batch.period_start,
        "period_end": batch.period_end,
        "identifier": batch.identifier,
        "quantity": batch.quantity,
        "raw_value": str(batch.raw_value),
        "event_timestamp": batch.event_timestamp,
        "newest_window_end": batch.newest_window_end,
        "members": len(batch.member_ids),
        "state": "pending",
        "attempts": 0,
        "next_attempt_at": batch.created_at,
        "created_at": batch.created_at,
    }
