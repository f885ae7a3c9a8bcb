"""Customer links to Stripe: customers, subscription items, billing periods, processed events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Table, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from collector.adapters.db.tables import (
    BillingPeriodRow,
    CustomerLinkRow,
    SubscriptionItemRow,
    WebhookEventRow,
)

LINKS: Table = CustomerLinkRow.__table__  # type: ignore[assignment]
ITEMS: Table = SubscriptionItemRow.__table__  # type: ignore[assignment]
PERIODS: Table = BillingPeriodRow.__table__  # type: ignore[assignment]
EVENTS: Table = WebhookEventRow.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class Link:
    customer_id: str
    stripe_customer_id: str
    subscription_id: str | None
    subscription_status: str | None


@dataclass(frozen=True)
class Item:
    lookup_key: str
    subscription_item_id: str
    price_id: str
    period_start: datetime | None
    period_end: datetime | None


def _insert(conn: AsyncConnection, table: Table) -> postgresql.Insert | sqlite.Insert:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


async def _upsert(
    conn: AsyncConnection, table: Table, keys: list[str], values: dict[str, object]
) -> None:
    statement = _insert(conn, table).values(values)
    changes = {k: v for k, v in values.items() if k not in keys}
    if changes:
        await conn.execute(statement.on_conflict_do_update(index_elements=keys, set_=changes))
    else:
        await conn.execute(statement.on_conflict_do_nothing(index_elements=keys))


class LinkStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def link(
        self,
        customer_id: str,
        stripe_customer_id: str,
        now: datetime,
        *,
        subscription_id: str | None = None,
        subscription_status: str | None = None,
    ) -> None:
        async with self._engine.begin() as conn:
            await _upsert(
                conn,
                LINKS,
                ["customer_id"],
                {
                    "customer_id": customer_id,
                    "stripe_customer_id": stripe_customer_id,
                    "subscription_id": subscription_id,
                    "subscription_status": subscription_status,
                    "updated_at": now,
                },
            )

    async def get(self, customer_id: str) -> Link | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(LINKS).where(LINKS.c.customer_id == customer_id))
            ).first()
        if row is None:
            return None
        return Link(
            row.customer_id, row.stripe_customer_id, row.subscription_id, row.subscription_status
        )

    async def all(self) -> list[Link]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(LINKS).order_by(LINKS.c.customer_id))).all()
        return [
            Link(r.customer_id, r.stripe_customer_id, r.subscription_id, r.subscription_status)
            for r in rows
        ]

    async def by_stripe_customer(self, stripe_customer_id: str) -> Link | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(LINKS).where(LINKS.c.stripe_customer_id == stripe_customer_id)
                )
            ).first()
        if row is None:
            return None
        return Link(
            row.customer_id, row.stripe_customer_id, row.subscription_id, row.subscription_status
        )

    async def replace_items(self, customer_id: str, items: Sequence[Item], now: datetime) -> None:
        """The subscription's items per lookup key, and each item's period as a known period."""
        async with self._engine.begin() as conn:
            await conn.execute(delete(ITEMS).where(ITEMS.c.customer_id == customer_id))
            for item in items:
                await conn.execute(
                    ITEMS.insert().values(
                        customer_id=customer_id,
                        lookup_key=item.lookup_key,
                        subscription_item_id=item.subscription_item_id,
                        price_id=item.price_id,
                        period_start=item.period_start,
                        period_end=item.period_end,
                        updated_at=now,
                    )
                )
                if item.period_start and item.period_end:
                    await _upsert(
                        conn,
                        PERIODS,
                        ["customer_id", "period_start"],
                        {
                            "customer_id": customer_id,
                            "period_start": item.period_start,
                            "period_end": item.period_end,
                        },
                    )

    async def item(self, customer_id: str, lookup_key: str) -> Item | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(ITEMS).where(
                        ITEMS.c.customer_id == customer_id, ITEMS.c.lookup_key == lookup_key
                    )
                )
            ).first()
        if row is None:
            return None
        return Item(
            row.lookup_key, row.subscription_item_id, row.price_id, row.period_start, row.period_end
        )

    async def items(self, customer_id: str) -> list[Item]:
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(select(ITEMS).where(ITEMS.c.customer_id == customer_id))
            ).all()
        return [
            Item(r.lookup_key, r.subscription_item_id, r.price_id, r.period_start, r.period_end)
            for r in rows
        ]

    async def periods(self, customer_id: str) -> list[tuple[datetime, datetime]]:
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(PERIODS)
                    .where(PERIODS.c.customer_id == customer_id)
                    .order_by(PERIODS.c.period_start)
                )
            ).all()
        return [(r.period_start, r.period_end) for r in rows]

    async def seen(self, event_id: str) -> bool:
        async with self._engine.connect() as conn:
            found = await conn.execute(
                select(EVENTS.c.event_id).where(EVENTS.c.event_id == event_id)
            )
            return found.first() is not None

    async def first_time(self, event_id: str, event_type: str, now: datetime) -> bool:
        """Record a webhook event id; False when it was processed before."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                _insert(conn, EVENTS)
                .values(event_id=event_id, event_type=event_type, received_at=now)
                .on_conflict_do_nothing(index_elements=["event_id"])
            )
            return bool(result.rowcount)
