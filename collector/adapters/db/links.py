"""Customer links to Stripe: customers, subscription items, billing periods, processed events."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Table, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from collector.adapters.db.corrections import audit, carry_and_dissolve
from collector.adapters.db.formation import period_ref
from collector.adapters.db.outbox_records import Link, PeriodRef, link_of
from collector.adapters.db.tables import (
    EVENTS,
    ITEMS,
    LINKS,
    PERIODS,
)

__all__ = [
    "Decide",
    "Item",
    "Link",
    "LinkChange",
    "LinkOutcome",
    "LinkStore",
    "SubscriptionFacts",
]


@dataclass(frozen=True)
class Item:
    lookup_key: str
    subscription_item_id: str
    price_id: str
    period_start: datetime | None
    period_end: datetime | None


@dataclass(frozen=True)
class SubscriptionFacts:
    """What Stripe said of a customer's subscription. ``subscription_id`` None: none is live."""

    subscription_id: str | None
    status: str | None
    created: datetime | None
    items: tuple[Item, ...] = ()
    periods: tuple[tuple[datetime, datetime], ...] = ()


@dataclass(frozen=True)
class LinkChange:
    """A link to apply: from an operator (``explicit``), a webhook, or the forwarder's read.

    ``facts`` None means Stripe could not be read: the customer's billing period stays unknown.
    """

    customer_id: str
    stripe_customer_id: str
    facts: SubscriptionFacts | None
    explicit: bool = False
    event_at: datetime | None = None
    actor: str = "collector"


@dataclass(frozen=True)
class LinkOutcome:
    current: bool
    relinked: bool
    link: Link | None
    carried: int = 0
    dissolved: int = 0


Decide = Callable[[Link | None, LinkChange], bool]


def _insert(conn: AsyncConnection, table: Table) -> postgresql.Insert | sqlite.Insert:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


async def _upsert(
    conn: AsyncConnection,
    table: Table,
    keys: list[str],
    values: dict[str, object],
    *,
    overwrite: bool = True,
) -> None:
    statement = _insert(conn, table).values(values)
    changes = {k: v for k, v in values.items() if k not in keys}
    if changes and overwrite:
        await conn.execute(statement.on_conflict_do_update(index_elements=keys, set_=changes))
    else:
        await conn.execute(statement.on_conflict_do_nothing(index_elements=keys))


async def _current_period_id(conn: AsyncConnection, link: Link, now: datetime) -> int | None:
    """The link's period containing ``now``; None when it is not known (nothing billed in it)."""
    key = link.billing_key
    if key is None:
        return None
    row = (
        await conn.execute(
            select(PERIODS.c.id)
            .where(
                PERIODS.c.customer_id == link.customer_id,
                PERIODS.c.stripe_customer_id == link.stripe_customer_id,
                PERIODS.c.subscription_id == key,
                PERIODS.c.period_start <= now,
                PERIODS.c.period_end > now,
            )
            .order_by(PERIODS.c.period_start.desc(), PERIODS.c.id.desc())
            .limit(1)
        )
    ).first()
    return int(row.id) if row is not None else None


class LinkStore:
    def __init__(self, engine: AsyncEngine, set_metrics: Sequence[str] = ()) -> None:
        self._engine = engine
        self._set_metrics = tuple(set_metrics)

    async def link(
        self,
        customer_id: str,
        stripe_customer_id: str,
        now: datetime,
        *,
        subscription_id: str | None = None,
        subscription_status: str | None = None,
    ) -> None:
        """An operator's link with what is known of the subscription (nothing: unknown)."""
        facts = (
            SubscriptionFacts(subscription_id, subscription_status, None)
            if subscription_id or subscription_status
            else None
        )
        await self.apply(
            LinkChange(customer_id, stripe_customer_id, facts, explicit=True),
            lambda current, change: True,
            now,
        )

    async def apply(self, change: LinkChange, decide: Decide, now: datetime) -> LinkOutcome:
        """Record a subscription's periods and, if ``decide`` says so, make it the current link.

        One transaction: the forwarder never sees a link whose periods are not stored yet. A
        relink (another Stripe customer or subscription) carries the current ``set`` values to
        the new one and frees batches not yet attempted.
        """
        async with self._engine.begin() as conn:
            query = select(LINKS).where(LINKS.c.customer_id == change.customer_id)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()
            row = (await conn.execute(query)).first()
            current = link_of(row) if row is not None else None
            facts = change.facts
            if facts is not None and facts.subscription_id:
                for start, end in facts.periods:
                    await _upsert(
                        conn,
                        PERIODS,
                        ["customer_id", "stripe_customer_id", "subscription_id", "period_start"],
                        {
                            "customer_id": change.customer_id,
                            "stripe_customer_id": change.stripe_customer_id,
                            "subscription_id": facts.subscription_id,
                            "period_start": start,
                            "period_end": end,
                            "created_at": now,
                        },
                        overwrite=False,
                    )
            if not decide(current, change):
                return LinkOutcome(False, False, current)
            same_customer = current is not None and (
                current.stripe_customer_id == change.stripe_customer_id
            )
            if facts is None:
                keep = current if same_customer else None
                subscription_id = keep.subscription_id if keep else None
                status = keep.subscription_status if keep else None
                created = keep.subscription_created if keep else None
                checked = keep.checked_at if keep else None
            else:
                subscription_id = facts.subscription_id
                status = facts.status or (None if facts.subscription_id else "none")
                created = facts.created
                checked = now
            old_key = current.billing_key if current else None
            new_key = Link(change.customer_id, "", subscription_id, status).billing_key
            relinked = current is not None and (
                not same_customer
                or (old_key is not None and new_key is not None and old_key != new_key)
            )
            generation = (current.generation if current else 0) + (1 if relinked else 0)
            event_at = max(
                (t for t in (current.event_at if current else None, change.event_at) if t),
                default=None,
            )
            await _upsert(
                conn,
                LINKS,
                ["customer_id"],
                {
                    "customer_id": change.customer_id,
                    "stripe_customer_id": change.stripe_customer_id,
                    "subscription_id": subscription_id,
                    "subscription_status": status,
                    "subscription_created": created,
                    "subscription_checked_at": checked,
                    "event_at": event_at,
                    "generation": generation,
                    "updated_at": now,
                },
            )
            if facts is not None and facts.subscription_id:
                await conn.execute(delete(ITEMS).where(ITEMS.c.customer_id == change.customer_id))
                for item in facts.items:
                    await conn.execute(
                        ITEMS.insert().values(
                            customer_id=change.customer_id,
                            lookup_key=item.lookup_key,
                            subscription_item_id=item.subscription_item_id,
                            price_id=item.price_id,
                            period_start=item.period_start,
                            period_end=item.period_end,
                            updated_at=now,
                        )
                    )
            carried = dissolved = 0
            if relinked and current is not None:
                carried, dissolved = await carry_and_dissolve(
                    conn,
                    change.customer_id,
                    generation,
                    self._set_metrics,
                    now,
                    await _current_period_id(conn, current, now),
                )
                await audit(
                    conn,
                    now,
                    change.actor,
                    "relink",
                    change.customer_id,
                    {
                        "from": {
                            "stripe_customer_id": current.stripe_customer_id,
                            "subscription_id": current.subscription_id,
                        },
                        "to": {
                            "stripe_customer_id": change.stripe_customer_id,
                            "subscription_id": subscription_id,
                        },
                        "generation": generation,
                        "set_values_carried": carried,
                        "batches_dissolved": dissolved,
                    },
                )
            link = Link(
                change.customer_id,
                change.stripe_customer_id,
                subscription_id,
                status,
                created,
                checked,
                event_at,
                generation,
            )
            return LinkOutcome(True, relinked, link, carried, dissolved)

    async def checked(self, customer_id: str, now: datetime) -> None:
        """The forwarder tried to read the subscription (whatever came of it)."""
        async with self._engine.begin() as conn:
            await conn.execute(
                update(LINKS)
                .where(LINKS.c.customer_id == customer_id)
                .values(subscription_checked_at=now)
            )

    async def get(self, customer_id: str) -> Link | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(LINKS).where(LINKS.c.customer_id == customer_id))
            ).first()
        return link_of(row) if row is not None else None

    async def all(self) -> list[Link]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(LINKS).order_by(LINKS.c.customer_id))).all()
        return [link_of(r) for r in rows]

    async def by_stripe_customer(self, stripe_customer_id: str) -> Link | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(LINKS).where(LINKS.c.stripe_customer_id == stripe_customer_id)
                )
            ).first()
        return link_of(row) if row is not None else None

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

    async def periods(self, customer_id: str, link: Link | None = None) -> list[PeriodRef]:
        """The periods of the customer's current subscription (or calendar months), oldest first."""
        link = link or await self.get(customer_id)
        if link is None or link.billing_key is None:
            return []
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(PERIODS)
                    .where(
                        PERIODS.c.customer_id == customer_id,
                        PERIODS.c.stripe_customer_id == link.stripe_customer_id,
                        PERIODS.c.subscription_id == link.billing_key,
                    )
                    .order_by(PERIODS.c.period_start, PERIODS.c.id)
                )
            ).all()
        return [period_ref(r) for r in rows]

    async def seen(self, event_id: str) -> bool:
        async with self._engine.connect() as conn:
            found = await conn.execute(
                select(EVENTS.c.event_id).where(EVENTS.c.event_id == event_id)
            )
            return found.first() is not None

    async def forget_event(self, event_id: str) -> None:
        """Release a claimed event id whose processing failed, so a redelivery is processed."""
        async with self._engine.begin() as conn:
            await conn.execute(delete(EVENTS).where(EVENTS.c.event_id == event_id))

    async def first_time(self, event_id: str, event_type: str, now: datetime) -> bool:
        """Record a webhook event id; False when it was processed before."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                _insert(conn, EVENTS)
                .values(event_id=event_id, event_type=event_type, received_at=now)
                .on_conflict_do_nothing(index_elements=["event_id"])
            )
            return bool(result.rowcount)
