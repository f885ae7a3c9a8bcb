"""What the customers view reads: each instance's last report, forward tallies, reconcile results.

Each read is one grouped query over every customer (or one), so the view costs the same few
queries however many customers there are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from collector.adapters.db.formation import upsert
from collector.adapters.db.tables import FORWARDS, REPORTS
from collector.adapters.db.tables import RECONCILE_RESULTS as RESULTS

UNBILLED = ("pending", "batched")
SETTLED = ("sent", "superseded", "rebilled")


@dataclass(frozen=True)
class InstanceActivity:
    customer_id: str
    instance_id: str
    last_report_at: datetime
    last_window_start: datetime
    last_window_end: datetime


@dataclass(frozen=True)
class ForwardTally:
    """One customer's forwards: waiting for Stripe, acknowledged, and dead-lettered."""

    pending: int = 0
    sent: int = 0
    dead: int = 0
    oldest_unbilled: datetime | None = None


@dataclass(frozen=True)
class ReconcileRecord:
    customer_id: str
    checked_at: datetime
    stripe_customer_id: str
    period_start: datetime
    period_end: datetime
    in_sync: bool
    drift: dict[str, Any]
    state: str | None = None
    """in_sync, drifting or settling; None for results stored before it was kept."""


class CustomerViewStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def customer_ids(self) -> set[str]:
        """Every customer that ever reported."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(REPORTS.c.customer_id).distinct())
            return {r.customer_id for r in rows.all()}

    async def instances(self, customer_id: str | None = None) -> list[InstanceActivity]:
        """Each instance's newest report (by arrival), oldest customer id first."""
        newest = select(
            func.max(REPORTS.c.id).label("id"),
        ).group_by(REPORTS.c.customer_id, REPORTS.c.instance_id)
        if customer_id is not None:
            newest = newest.where(REPORTS.c.customer_id == customer_id)
        query = (
            select(
                REPORTS.c.customer_id,
                REPORTS.c.instance_id,
                REPORTS.c.created_at,
                REPORTS.c.window_start,
                REPORTS.c.window_end,
            )
            .where(REPORTS.c.id.in_(newest.scalar_subquery()))
            .order_by(REPORTS.c.customer_id, REPORTS.c.instance_id)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            InstanceActivity(
                r.customer_id, r.instance_id, r.created_at, r.window_start, r.window_end
            )
            for r in rows
        ]

    async def forward_tallies(self, customer_id: str | None = None) -> dict[str, ForwardTally]:
        unbilled = FORWARDS.c.state.in_(UNBILLED)
        query = select(
            FORWARDS.c.customer_id,
            func.count().filter(unbilled).label("pending"),
            func.count().filter(FORWARDS.c.state.in_(SETTLED)).label("sent"),
            func.count().filter(FORWARDS.c.state == "dead").label("dead"),
            func.min(case((unbilled, FORWARDS.c.window_end))).label("oldest"),
        ).group_by(FORWARDS.c.customer_id)
        if customer_id is not None:
            query = query.where(FORWARDS.c.customer_id == customer_id)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {
            r.customer_id: ForwardTally(int(r.pending), int(r.sent), int(r.dead), r.oldest)
            for r in rows
        }

    async def reconcile_results(self, customer_id: str | None = None) -> dict[str, ReconcileRecord]:
        query = select(RESULTS)
        if customer_id is not None:
            query = query.where(RESULTS.c.customer_id == customer_id)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {r.customer_id: ReconcileRecord(**dict(r._mapping)) for r in rows}

    async def record_reconcile(self, record: ReconcileRecord) -> None:
        """Keep ``record`` as the customer's latest result."""
        values = dict(vars(record))
        async with self._engine.begin() as conn:
            statement = upsert(conn, RESULTS).values(**values)
            statement = statement.on_conflict_do_update(
                index_elements=[RESULTS.c.customer_id],
                set_={k: statement.excluded[k] for k in values if k != "customer_id"},
            )
            await conn.execute(statement)
