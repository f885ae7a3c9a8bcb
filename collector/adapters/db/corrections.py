"""Corrections to what was billed: meter error reports, relinks, retired instances, rebills.

Each is one transaction that puts forwards back in the outbox (with a new generation, so the
resend carries a new identifier) or adds marker forwards, and leaves an audit record where an
operator or Stripe caused it. Nothing here sends to Stripe; the forwarder does, as for any
forward.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from collector.adapters.db.formation import newest_rows
from collector.adapters.db.tables import (
    AUDIT,
    BATCHES,
    FORWARDS,
    PERIOD_INDEXED,
    STATE,
)

MARKER_NAMESPACE = uuid.UUID("8d3f7a52-1c0e-5b9a-8f21-6a7e4c3d2b10")
MAX_REQUEUES = 3
ONE_SECOND = timedelta(seconds=1)
LIVE = ("pending", "batched", "sent", "superseded")


@dataclass(frozen=True)
class Rebilled:
    batch_id: int
    identifier: str
    customer_id: str
    metric: str
    quantity: int
    members: int


@dataclass(frozen=True)
class Ageing:
    customer_id: str
    metric: str
    forwards: int
    oldest_window_end: datetime
    expires_at: datetime


async def audit(
    conn: AsyncConnection,
    now: datetime,
    actor: str,
    action: str,
    customer_id: str,
    detail: dict[str, Any],
) -> None:
    await conn.execute(
        AUDIT.insert().values(
            at=now, actor=actor, action=action, customer_id=customer_id, detail=detail
        )
    )


async def requeue_members(conn: AsyncConnection, batch_id: int, *, kind: str | None = None) -> None:
    """A batch's members wait again, one generation on, so their resend has a new identifier."""
    values: dict[str, Any] = {
        "state": "pending",
        "batch_id": None,
        "period_id": None,
        "generation": FORWARDS.c.generation + 1,
    }
    if kind is not None:
        values["kind"] = kind
    await conn.execute(update(FORWARDS).where(FORWARDS.c.batch_id == batch_id).values(**values))


async def newest_forwards(
    conn: AsyncConnection,
    customer_id: str,
    metrics: Sequence[str],
    instance_id: str | None = None,
    period_id: int | None = None,
) -> list[Any]:
    """Each instance's newest live forward of each of ``metrics`` (billed in ``period_id``)."""
    if not metrics:
        return []
    conditions = [
        FORWARDS.c.customer_id == customer_id,
        FORWARDS.c.metric.in_(list(metrics)),
        FORWARDS.c.state.in_(LIVE),
    ]
    if instance_id is not None:
        conditions.append(FORWARDS.c.instance_id == instance_id)
    if period_id is not None:
        conditions += [FORWARDS.c.period_id == period_id, PERIOD_INDEXED]
    return await newest_rows(conn, conditions, (FORWARDS.c.metric, FORWARDS.c.instance_id))


def marker(
    customer_id: str,
    instance_id: str,
    metric: str,
    kind: str,
    tag: str,
    window_start: datetime,
    window_end: datetime,
    value: str,
    now: datetime,
) -> dict[str, Any]:
    report_id = uuid.uuid5(
        MARKER_NAMESPACE, f"{kind}\x1f{customer_id}\x1f{instance_id}\x1f{metric}\x1f{tag}"
    )
    return {
        "report_pk": 0,
        "report_id": report_id,
        "customer_id": customer_id,
        "instance_id": instance_id,
        "metric": metric,
        "kind": kind,
        "window_start": window_start,
        "window_end": window_end,
        "value": value,
        "state": "pending",
        "batch_id": None,
        "period_id": None,
        "generation": 0,
        "created_at": now,
    }


async def carry_and_dissolve(
    conn: AsyncConnection,
    customer_id: str,
    generation: int,
    set_metrics: Sequence[str],
    now: datetime,
    current_period_id: int | None,
) -> tuple[int, int]:
    """After a relink: carry the current ``set`` value, and free batches not yet attempted.

    The current value is each instance's newest value billed in the old link's current period
    (an instance that has not reported in it is not billed there, so it is not carried).
    Returns (values carried, batches dissolved). A batch already attempted may have reached
    Stripe under the old customer, so it completes there under its identifier.
    """
    carried = []
    rows = (
        await newest_forwards(conn, customer_id, set_metrics, period_id=current_period_id)
        if current_period_id is not None
        else []
    )
    for row in rows:
        if row.kind == "retire":
            continue
        carried.append(
            marker(
                customer_id,
                row.instance_id,
                row.metric,
                "carry",
                str(generation),
                row.window_start,
                row.window_end,
                row.value,
                now,
            )
        )
    if carried:
        await conn.execute(FORWARDS.insert(), carried)
    unsent = [
        r.id
        for r in (
            await conn.execute(
                select(BATCHES.c.id).where(
                    BATCHES.c.customer_id == customer_id,
                    BATCHES.c.state == "pending",
                    BATCHES.c.attempts == 0,
                    # A worker that claimed it may have died mid-call: it was attempted.
                    BATCHES.c.lease_owner.is_(None),
                )
            )
        ).all()
    ]
    for batch_id in unsent:
        await conn.execute(
            update(FORWARDS)
            .where(FORWARDS.c.batch_id == batch_id)
            .values(state="pending", batch_id=None, period_id=None)
        )
    if unsent:
        await conn.execute(
            update(BATCHES).where(BATCHES.c.id.in_(unsent)).values(state="dissolved")
        )
    return len(carried), len(unsent)


class CorrectionStore:
    """Corrections an operator or Stripe asks for; every method is one transaction."""

    def __init__(self, engine: AsyncEngine, set_metrics: Sequence[str]) -> None:
        self._engine = engine
        self._set_metrics = tuple(set_metrics)

    async def meter_error(self, identifier: str, error: str, now: datetime) -> str:
        """Stripe reported an event it had accepted as failed: bill its usage again, once.

        Increments leave the delivered total and wait again. A ``set``/``max`` value that is
        the newest event Stripe holds is forgotten as delivered, so it is sent again; one that a
        later accepted event already replaced needs nothing.
        """
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(select(BATCHES).where(BATCHES.c.identifier == identifier))
            ).first()
            if row is None or row.state not in ("pending", "sent"):
                return "unknown" if row is None else "already handled"
            generation = (
                await conn.execute(
                    select(func.max(FORWARDS.c.generation)).where(FORWARDS.c.batch_id == row.id)
                )
            ).scalar_one() or 0
            undone = await self._undo_delivery(conn, row) if row.state == "sent" else "requeued"
            if generation >= MAX_REQUEUES:
                outcome = "dead"
                await conn.execute(
                    update(BATCHES)
                    .where(BATCHES.c.id == row.id)
                    .values(state="dead", dead_reason="meter_error", last_error=error[:1000])
                )
                await conn.execute(
                    update(FORWARDS).where(FORWARDS.c.batch_id == row.id).values(state="dead")
                )
            else:
                outcome = undone
                await conn.execute(
                    update(BATCHES)
                    .where(BATCHES.c.id == row.id)
                    .values(
                        state="rejected",
                        dead_reason="meter_error",
                        last_error=error[:1000],
                        lease_owner=None,
                        lease_until=None,
                    )
                )
                if outcome == "superseded":
                    await conn.execute(
                        update(FORWARDS)
                        .where(FORWARDS.c.batch_id == row.id)
                        .values(state="superseded")
                    )
                else:
                    await requeue_members(conn, row.id)
            detail = {"batch_id": row.id, "identifier": identifier, "outcome": outcome}
            await audit(
                conn, now, "stripe", "meter_error", row.customer_id, detail | {"error": error[:300]}
            )
            return outcome

    async def _undo_delivery(self, conn: AsyncConnection, row: Any) -> str:
        state = (
            await conn.execute(
                select(STATE).where(
                    STATE.c.period_id == row.period_id, STATE.c.metric == row.metric
                )
            )
        ).first()
        if state is None:
            return "requeued"
        where = and_(STATE.c.period_id == row.period_id, STATE.c.metric == row.metric)
        if row.semantics == "increment":
            await conn.execute(
                update(STATE)
                .where(where)
                .values(
                    raw_total=str(Decimal(state.raw_total) - Decimal(row.raw_value)),
                    billed_total=state.billed_total - row.quantity,
                )
            )
            return "requeued"
        if (
            state.last_event_timestamp is not None
            and row.event_timestamp < state.last_event_timestamp
        ):
            return "superseded"
        await conn.execute(
            update(STATE).where(where).values(raw_total="0", billed_total=0, last_value=None)
        )
        return "requeued"

    async def retire(
        self, customer_id: str, instance_id: str, actor: str, now: datetime
    ) -> list[str]:
        """Stop billing an instance's device count: its newest ``set`` value becomes zero.

        Returns the metrics zeroed. Reports the instance sends later count again.
        """
        async with self._engine.begin() as conn:
            rows = await newest_forwards(conn, customer_id, self._set_metrics, instance_id)
            markers = []
            for row in rows:
                if row.kind == "retire":
                    continue
                # Stamped one second before its end: ending a second after now keeps the zero
                # in the period that is current now, even exactly at a boundary.
                at = max(now.replace(microsecond=0), row.window_end) + ONE_SECOND
                markers.append(
                    marker(
                        customer_id,
                        instance_id,
                        row.metric,
                        "retire",
                        at.isoformat(),
                        at,
                        at,
                        "0",
                        now,
                    )
                )
            if markers:
                await conn.execute(FORWARDS.insert(), markers)
                await audit(
                    conn,
                    now,
                    actor,
                    "retire_instance",
                    customer_id,
                    {"instance_id": instance_id, "metrics": [m["metric"] for m in markers]},
                )
            return [m["metric"] for m in markers]

    async def rebill(
        self,
        actor: str,
        now: datetime,
        *,
        batch_id: int | None = None,
        customer_id: str | None = None,
    ) -> list[Rebilled]:
        """Bill increments Stripe refused as too old into the customer's current period."""
        async with self._engine.begin() as conn:
            query = select(BATCHES).where(
                BATCHES.c.state == "dead",
                BATCHES.c.dead_reason == "too_old",
                BATCHES.c.semantics == "increment",
            )
            if batch_id is not None:
                query = query.where(BATCHES.c.id == batch_id)
            if customer_id is not None:
                query = query.where(BATCHES.c.customer_id == customer_id)
            done = []
            for row in (await conn.execute(query.order_by(BATCHES.c.id))).all():
                await conn.execute(
                    update(BATCHES).where(BATCHES.c.id == row.id).values(state="rebilled")
                )
                await requeue_members(conn, row.id, kind="rebill")
                record = Rebilled(
                    row.id, row.identifier, row.customer_id, row.metric, row.quantity, row.members
                )
                await audit(
                    conn,
                    now,
                    actor,
                    "rebill",
                    row.customer_id,
                    {
                        "batch_id": row.id,
                        "identifier": row.identifier,
                        "metric": row.metric,
                        "quantity": row.quantity,
                        "event_timestamp": row.event_timestamp.isoformat(),
                        "members": row.members,
                    },
                )
                done.append(record)
            return done

    async def dead_batch(self, batch_id: int) -> Any | None:
        async with self._engine.connect() as conn:
            return (await conn.execute(select(BATCHES).where(BATCHES.c.id == batch_id))).first()

    async def ageing(self, older_than: datetime, limit: int = 100) -> list[Ageing]:
        """Waiting usage whose window ended before ``older_than``, per customer and metric."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(
                    FORWARDS.c.customer_id,
                    FORWARDS.c.metric,
                    func.count().label("forwards"),
                    func.min(FORWARDS.c.window_end).label("oldest"),
                )
                .where(
                    FORWARDS.c.state.in_(("pending", "batched")),
                    FORWARDS.c.kind != "rebill",
                    FORWARDS.c.window_end < older_than,
                )
                .group_by(FORWARDS.c.customer_id, FORWARDS.c.metric)
                .order_by(func.min(FORWARDS.c.window_end))
                .limit(limit)
            )
            return [
                Ageing(
                    r.customer_id,
                    r.metric,
                    int(r.forwards),
                    _utc(r.oldest),
                    _utc(r.oldest) - ONE_SECOND + timedelta(days=35),
                )
                for r in rows.all()
            ]

    async def audit_log(self, customer_id: str | None = None, limit: int = 100) -> list[Any]:
        query = select(AUDIT).order_by(AUDIT.c.id.desc()).limit(limit)
        if customer_id is not None:
            query = query.where(AUDIT.c.customer_id == customer_id)
        async with self._engine.connect() as conn:
            return list((await conn.execute(query)).all())


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
