"""Batch formation: waiting forwards become batches of one billing period, in one transaction.

The planner chooses each group's period from the customer's current link; a group whose period
is unknown waits. Forwards remember the period they were billed in, so the state and the
instances' values of a period are read from what was billed in it, never from row order.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, and_, bindparam, func, select, text, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from collector.adapters.db.outbox_records import (
    Choice,
    Formation,
    Link,
    MeterState,
    NewBatch,
    PendingForward,
    PeriodRef,
    Planner,
    empty_state,
    link_of,
    state_from_row,
)
from collector.adapters.db.tables import (
    BATCHES,
    FORWARDS,
    LINKS,
    PERIOD_INDEXED,
    PERIODS,
    STATE,
)

FORMATION_LOCK = 0x55534147  # any constant: one batch former at a time across replicas
BILLED = ("batched", "sent", "superseded")


def upsert(conn: AsyncConnection, table: Table) -> Any:
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(table)


def pending_of(row: Any) -> PendingForward:
    return PendingForward(
        row.id,
        row.report_id,
        row.customer_id,
        row.metric,
        row.window_end,
        Decimal(row.value),
        row.instance_id,
        row.window_start,
        row.kind,
        row.generation,
    )


def period_ref(row: Any) -> PeriodRef:
    return PeriodRef(
        row.id,
        row.customer_id,
        row.stripe_customer_id,
        row.subscription_id,
        row.period_start,
        row.period_end,
    )


async def lock_formation(conn: AsyncConnection) -> bool:
    if conn.dialect.name != "postgresql":
        return True
    result = await conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": FORMATION_LOCK})
    return bool(result.scalar_one())


async def current_periods(
    conn: AsyncConnection, links: dict[str, Link]
) -> dict[str, list[PeriodRef]]:
    """Each customer's periods under its current Stripe customer and subscription."""
    found: dict[str, list[PeriodRef]] = {c: [] for c in links}
    if not links:
        return found
    rows = await conn.execute(
        select(PERIODS)
        .where(PERIODS.c.customer_id.in_(sorted(links)))
        .order_by(PERIODS.c.customer_id, PERIODS.c.period_start, PERIODS.c.id)
    )
    for row in rows.all():
        link = links[row.customer_id]
        wanted = link.billing_key
        if row.stripe_customer_id == link.stripe_customer_id and row.subscription_id == wanted:
            found[row.customer_id].append(period_ref(row))
    return found


async def store_periods(
    conn: AsyncConnection, periods: Sequence[PeriodRef], now: datetime
) -> dict[tuple[str, str, str, datetime], int]:
    """Insert periods not stored yet (calendar months); returns every one's id by identity."""

    def key(p: PeriodRef) -> tuple[str, str, str, datetime]:
        return (p.customer_id, p.stripe_customer_id, p.subscription_id, p.start)

    unique = {key(p): p for p in periods}
    if not unique:
        return {}
    statement = upsert(conn, PERIODS).on_conflict_do_nothing(
        index_elements=["customer_id", "stripe_customer_id", "subscription_id", "period_start"]
    )
    await conn.execute(
        statement,
        [
            {
                "customer_id": p.customer_id,
                "stripe_customer_id": p.stripe_customer_id,
                "subscription_id": p.subscription_id,
                "period_start": p.start,
                "period_end": p.end,
                "created_at": now,
            }
            for p in unique.values()
        ],
    )
    identity = tuple_(
        PERIODS.c.customer_id,
        PERIODS.c.stripe_customer_id,
        PERIODS.c.subscription_id,
        PERIODS.c.period_start,
    )
    rows = await conn.execute(select(PERIODS).where(identity.in_(list(unique))))
    return {key(period_ref(r)): r.id for r in rows.all()}


async def newest_rows(
    conn: AsyncConnection, conditions: Sequence[Any], keys: Sequence[Any]
) -> list[Any]:
    """Per group of ``keys``, the forward with the newest window end (then the highest id)."""
    newest = (
        select(*keys, func.max(FORWARDS.c.window_end).label("newest_end"))
        .where(*conditions)
        .group_by(*keys)
        .subquery()
    )
    on = and_(
        *(key == newest.c[key.name] for key in keys),
        FORWARDS.c.window_end == newest.c.newest_end,
    )
    rows = await conn.execute(
        select(FORWARDS).join(newest, on).where(*conditions).order_by(FORWARDS.c.id.desc())
    )
    found: dict[tuple[Any, ...], Any] = {}
    for row in rows.all():
        found.setdefault(tuple(getattr(row, key.name) for key in keys), row)
    return list(found.values())


async def billed_context(
    conn: AsyncConnection, wants: Sequence[tuple[int, str, str, datetime, datetime]]
) -> dict[tuple[int, str], list[PendingForward]]:
    """What was already billed in each (period, metric): the windows a new batch combines with.

    ``wants`` holds (period id, metric, semantics, earliest start, latest end) of the members.
    A ``set`` needs each instance's newest billed window; a ``max`` the billed windows that
    overlap the members' span.
    """
    context: dict[tuple[int, str], list[PendingForward]] = defaultdict(list)
    newest_for = [(pid, metric) for pid, metric, semantics, _, _ in wants if semantics == "set"]
    if newest_for:
        billed = [
            tuple_(FORWARDS.c.period_id, FORWARDS.c.metric).in_(newest_for),
            PERIOD_INDEXED,
            FORWARDS.c.state.in_(BILLED),
        ]
        keys = (FORWARDS.c.period_id, FORWARDS.c.metric, FORWARDS.c.instance_id)
        for row in await newest_rows(conn, billed, keys):
            context[(row.period_id, row.metric)].append(pending_of(row))
    spans = {
        (pid, metric): (lo, hi) for pid, metric, semantics, lo, hi in wants if semantics == "max"
    }
    if spans:
        rows = await conn.execute(
            select(FORWARDS).where(
                tuple_(FORWARDS.c.period_id, FORWARDS.c.metric).in_(list(spans)),
                PERIOD_INDEXED,
                FORWARDS.c.window_end > min(lo for lo, _ in spans.values()),
                FORWARDS.c.window_start < max(hi for _, hi in spans.values()),
                FORWARDS.c.state.in_(BILLED),
            )
        )
        for row in rows.all():
            lo, hi = spans[(row.period_id, row.metric)]
            if row.window_end > lo and row.window_start < hi:
                context[(row.period_id, row.metric)].append(pending_of(row))
    return context


async def form(
    conn: AsyncConnection,
    groups: Sequence[tuple[str, str]],
    planner: Planner,
    semantics_of: dict[str, str],
    *,
    max_members: int,
    now: datetime,
) -> tuple[list[Formation], set[str]]:
    """Form what can be formed for ``groups``; returns the outcomes and the customers waiting
    for a billing period."""
    if not await lock_formation(conn):
        return [], set()
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
        return [], set()
    waiting: dict[tuple[str, str], list[PendingForward]] = {g: [] for g in free}
    rows = await conn.execute(
        select(FORWARDS)
        .where(
            FORWARDS.c.state == "pending",
            tuple_(FORWARDS.c.customer_id, FORWARDS.c.metric).in_(free),
        )
        .order_by(FORWARDS.c.customer_id, FORWARDS.c.metric, FORWARDS.c.window_end, FORWARDS.c.id)
    )
    for r in rows.all():
        members = waiting[(r.customer_id, r.metric)]
        if len(members) < max_members:
            members.append(pending_of(r))
    customers = sorted({c for c, _ in free})
    links = {
        r.customer_id: link_of(r)
        for r in (await conn.execute(select(LINKS).where(LINKS.c.customer_id.in_(customers)))).all()
    }
    periods = await current_periods(conn, links)
    choices = []
    blocked: set[str] = set()
    for group in free:
        members = waiting[group]
        link = links.get(group[0])
        if not members or link is None:
            continue
        choice = planner.choose(members, link, periods[group[0]])
        if choice.period is None or not choice.members:
            blocked.add(group[0])
            continue
        choices.append((group, choice))
    unstored = [c.period for _, c in choices if c.period is not None and c.period.id is None]
    ids = await store_periods(conn, unstored, now)
    resolved = []
    for group, choice in choices:
        period = choice.period
        assert period is not None
        if period.id is None:
            key = (
                period.customer_id,
                period.stripe_customer_id,
                period.subscription_id,
                period.start,
            )
            period = dataclasses.replace(period, id=ids[key])
        resolved.append((group, choice, period))
    return await _plan_and_apply(conn, resolved, planner, semantics_of, now), blocked


async def _plan_and_apply(
    conn: AsyncConnection,
    resolved: list[tuple[tuple[str, str], Choice, PeriodRef]],
    planner: Planner,
    semantics_of: dict[str, str],
    now: datetime,
) -> list[Formation]:
    if not resolved:
        return []
    keys = [(period.id, metric) for (_, metric), _, period in resolved]
    states = {
        (r.period_id, r.metric): state_from_row(r)
        for r in (
            await conn.execute(
                select(STATE).where(tuple_(STATE.c.period_id, STATE.c.metric).in_(keys))
            )
        ).all()
    }
    wants = []
    for (_, metric), choice, period in resolved:
        assert period.id is not None
        starts = [m.window_start or m.window_end for m in choice.members]
        wants.append(
            (
                period.id,
                metric,
                semantics_of.get(metric, ""),
                min(starts),
                max(m.window_end for m in choice.members),
            )
        )
    context = await billed_context(conn, wants)
    outcomes = []
    for (customer_id, metric), choice, period in resolved:
        assert period.id is not None
        state = states.get((period.id, metric)) or empty_state(
            period.id, customer_id, metric, period.start, period.end
        )
        outcome = planner.plan(choice, period, state, context.get((period.id, metric), []))
        if outcome is not None:
            outcomes.append(outcome)
    await apply(conn, outcomes)
    return outcomes


async def apply(conn: AsyncConnection, outcomes: list[Formation]) -> None:
    batches = [o.batch for o in outcomes if o.batch is not None]
    if batches:
        inserted = await conn.execute(
            BATCHES.insert().returning(BATCHES.c.id, sort_by_parameter_order=True),
            [batch_row(b) for b in batches],
        )
        ids = [r.id for r in inserted.all()]
        await conn.execute(
            update(FORWARDS)
            .where(FORWARDS.c.id == bindparam("f_id"), FORWARDS.c.state == "pending")
            .values(
                state="batched", batch_id=bindparam("f_batch"), period_id=bindparam("f_period")
            ),
            [
                {"f_id": member, "f_batch": batch_id, "f_period": batch.period_id}
                for batch, batch_id in zip(batches, ids, strict=True)
                for member in batch.member_ids
            ],
        )
    settled: dict[tuple[str, int | None], list[int]] = defaultdict(list)
    for outcome in outcomes:
        settled[(outcome.settled_as, outcome.period_id)].extend(outcome.settled_ids)
    for (state, period_id), ids in settled.items():
        if ids:
            await conn.execute(
                update(FORWARDS)
                .where(FORWARDS.c.id.in_(ids), FORWARDS.c.state == "pending")
                .values(state=state, period_id=period_id)
            )
    await save_states(conn, [o.state for o in outcomes if o.state is not None])


async def save_states(conn: AsyncConnection, states: Sequence[MeterState]) -> None:
    """Upsert delivered states in one statement."""
    if not states:
        return
    rows = [
        {
            "period_id": state.period_id,
            "metric": state.metric,
            "customer_id": state.customer_id,
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
    statement = upsert(conn, STATE)
    keys = ("period_id", "metric")
    statement = statement.on_conflict_do_update(
        index_elements=list(keys),
        set_={k: statement.excluded[k] for k in rows[0] if k not in keys},
    )
    await conn.execute(statement, rows)


def batch_row(batch: NewBatch) -> dict[str, Any]:
    return {
        "customer_id": batch.customer_id,
        "metric": batch.metric,
        "semantics": batch.semantics,
        "mode": batch.mode,
        "period_id": batch.period_id,
        "stripe_customer_id": batch.stripe_customer_id,
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
