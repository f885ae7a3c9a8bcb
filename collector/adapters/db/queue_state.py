"""What waits in the outbox, read for the gauges and the status page.

Each query reads only rows that wait, through an index whose first column is the state
(``ix_forwards_pending``, ``ix_forward_batches_due``), so its cost grows with what waits, never
with what was delivered. On PostgreSQL the forwards side is an index-only scan of the
``pending``/``batched`` ranges, a hash aggregate per customer, and a join of one row per
customer to ``stripe_customers``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, exists, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from collector.adapters.db.tables import BATCHES, FORWARDS, LINKS

UNBILLED = ("pending", "batched")


@dataclass(frozen=True)
class QueueSnapshot:
    """The outbox at one moment: what waits, since when, and for how many customers."""

    pending: int
    """Forwards not in a batch yet (an unlinked customer's usage waits here)."""
    batched: int
    """Forwards in an open batch: being sent, or waiting to be retried."""
    oldest_window_end: datetime | None
    """The window end of the oldest pending or batched forward."""
    unlinked_customers: int
    """Customers with waiting usage and no link to a Stripe customer."""
    waiting_customers: int
    """Linked customers with waiting usage."""
    dead_batches: int
    """Open dead letters (batches in state ``dead``)."""
    dead_customers: int
    """Customers with at least one open dead letter."""

    @property
    def customers_by_reason(self) -> dict[str, int]:
        """Customers with unbilled usage by why it waits; one customer may count twice."""
        return {
            "unlinked": self.unlinked_customers,
            "waiting": self.waiting_customers,
            "dead": self.dead_customers,
        }


@dataclass(frozen=True)
class UnlinkedCustomer:
    """A customer whose usage waits because no Stripe customer is linked to it."""

    customer_id: str
    forwards: int
    oldest_window_end: datetime


async def snapshot(conn: AsyncConnection) -> QueueSnapshot:
    """Two grouped reads: waiting forwards per (linked or not), open dead letters."""
    per_customer = (
        select(
            FORWARDS.c.customer_id,
            func.sum(case((FORWARDS.c.state == "pending", 1), else_=0)).label("pending"),
            func.sum(case((FORWARDS.c.state == "batched", 1), else_=0)).label("batched"),
            func.min(FORWARDS.c.window_end).label("oldest"),
        )
        .where(FORWARDS.c.state.in_(UNBILLED))
        .group_by(FORWARDS.c.customer_id)
        .subquery("per_customer")
    )
    unlinked = case((LINKS.c.customer_id.is_(None), 1), else_=0)
    rows = (
        await conn.execute(
            select(
                unlinked.label("unlinked"),
                func.sum(per_customer.c.pending).label("pending"),
                func.sum(per_customer.c.batched).label("batched"),
                func.min(per_customer.c.oldest).label("oldest"),
                func.count().label("customers"),
            )
            .select_from(
                per_customer.outerjoin(LINKS, LINKS.c.customer_id == per_customer.c.customer_id)
            )
            .group_by(unlinked)
        )
    ).all()
    dead, dead_customers = (
        await conn.execute(
            select(func.count(), func.count(func.distinct(BATCHES.c.customer_id))).where(
                BATCHES.c.state == "dead"
            )
        )
    ).one()
    by_link = {int(r.unlinked): r for r in rows}
    oldest = min((r.oldest for r in rows if r.oldest is not None), default=None)
    return QueueSnapshot(
        pending=sum(int(r.pending or 0) for r in rows),
        batched=sum(int(r.batched or 0) for r in rows),
        oldest_window_end=oldest,
        unlinked_customers=int(by_link[1].customers) if 1 in by_link else 0,
        waiting_customers=int(by_link[0].customers) if 0 in by_link else 0,
        dead_batches=int(dead),
        dead_customers=int(dead_customers),
    )


async def unlinked_customers(conn: AsyncConnection, limit: int) -> list[UnlinkedCustomer]:
    """Customers whose usage waits without a link, oldest waiting first, at most ``limit``."""
    oldest = func.min(FORWARDS.c.window_end)
    rows = await conn.execute(
        select(FORWARDS.c.customer_id, func.count().label("forwards"), oldest.label("oldest"))
        .where(
            FORWARDS.c.state.in_(UNBILLED),
            ~exists().where(LINKS.c.customer_id == FORWARDS.c.customer_id),
        )
        .group_by(FORWARDS.c.customer_id)
        .order_by(oldest, FORWARDS.c.customer_id)
        .limit(limit)
    )
    return [UnlinkedCustomer(r.customer_id, int(r.forwards), r.oldest) for r in rows.all()]
