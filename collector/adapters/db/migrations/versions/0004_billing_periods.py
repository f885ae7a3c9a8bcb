"""Billing periods as records: per Stripe customer and subscription; state keyed by period.

Forwards learn their instance and the period they were billed in; batches their period and
Stripe customer; links their generation and when the subscription was last read. Existing
periods and delivered state are carried over under the customer's current link.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 01:30:00.000000
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from collector.adapters.db.tables import BigId, UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UTC_TYPE = UtcDateTime()


def _rows(bind: Any, sql: str) -> list[Any]:
    return list(bind.execute(sa.text(sql)).mappings().all())


def _utc(value: Any) -> datetime:
    moment: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def upgrade() -> None:
    bind = op.get_bind()
    now = datetime.now(UTC)
    links = {
        r["customer_id"]: r
        for r in _rows(
            bind, "SELECT customer_id, stripe_customer_id, subscription_id FROM stripe_customers"
        )
    }
    old_periods = _rows(bind, "SELECT customer_id, period_start, period_end FROM billing_periods")
    old_states = _rows(bind, "SELECT * FROM meter_state")
    op.drop_table("billing_periods")
    op.drop_table("meter_state")

    periods = op.create_table(
        "billing_periods",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("stripe_customer_id", sa.String(length=64), nullable=False),
        sa.Column("subscription_id", sa.String(length=64), nullable=False),
        sa.Column("period_start", UtcDateTime(), nullable=False),
        sa.Column("period_end", UtcDateTime(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_periods")),
    )
    op.create_index(
        "uq_billing_periods_identity",
        "billing_periods",
        ["customer_id", "stripe_customer_id", "subscription_id", "period_start"],
        unique=True,
    )
    states = op.create_table(
        "meter_state",
        sa.Column("period_id", sa.BigInteger(), nullable=False),
        sa.Column("metric", sa.String(length=63), nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("period_start", UtcDateTime(), nullable=False),
        sa.Column("period_end", UtcDateTime(), nullable=False),
        sa.Column("raw_total", sa.String(length=40), nullable=False),
        sa.Column("billed_total", sa.BigInteger(), nullable=False),
        sa.Column("last_value", sa.String(length=40), nullable=True),
        sa.Column("newest_window_end", UtcDateTime(), nullable=True),
        sa.Column("last_event_timestamp", UtcDateTime(), nullable=True),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("period_id", "metric", name=op.f("pk_meter_state")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_customer", "audit_log", ["customer_id", "at"])

    with op.batch_alter_table("stripe_customers") as table:
        table.add_column(sa.Column("subscription_created", UtcDateTime(), nullable=True))
        table.add_column(sa.Column("subscription_checked_at", UtcDateTime(), nullable=True))
        table.add_column(sa.Column("event_at", UtcDateTime(), nullable=True))
        table.add_column(sa.Column("generation", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("forwards") as table:
        table.add_column(
            sa.Column("instance_id", sa.String(length=128), nullable=False, server_default="")
        )
        table.add_column(
            sa.Column("kind", sa.String(length=8), nullable=False, server_default="report")
        )
        table.add_column(sa.Column("period_id", sa.BigInteger(), nullable=True))
        table.add_column(sa.Column("generation", sa.Integer(), nullable=False, server_default="0"))
        table.create_index(
            "ix_forwards_period", ["period_id", "metric", "instance_id", "window_end"]
        )
    with op.batch_alter_table("forward_batches") as table:
        table.add_column(sa.Column("period_id", sa.BigInteger(), nullable=True))
        table.add_column(sa.Column("stripe_customer_id", sa.String(length=64), nullable=True))
        table.add_column(sa.Column("dead_reason", sa.String(length=16), nullable=True))
    bind.execute(
        sa.text(
            "UPDATE forwards SET instance_id = (SELECT r.instance_id FROM usage_reports r "
            "WHERE r.id = forwards.report_pk) WHERE EXISTS (SELECT 1 FROM usage_reports r "
            "WHERE r.id = forwards.report_pk)"
        )
    )

    ids: dict[tuple[str, datetime], int] = {}

    def period_id(customer_id: str, start: datetime, end: datetime) -> int | None:
        link = links.get(customer_id)
        if link is None:
            return None
        key = (customer_id, _utc(start))
        if key not in ids:
            inserted = bind.execute(
                periods.insert().returning(periods.c.id),
                {
                    "customer_id": customer_id,
                    "stripe_customer_id": link["stripe_customer_id"],
                    "subscription_id": link["subscription_id"] or "",
                    "period_start": _utc(start),
                    "period_end": _utc(end),
                    "created_at": now,
                },
            )
            ids[key] = int(inserted.scalar_one())
        return ids[key]

    for row in old_periods:
        period_id(row["customer_id"], row["period_start"], row["period_end"])
    for row in old_states:
        pid = period_id(row["customer_id"], row["period_start"], row["period_end"])
        if pid is None:
            continue
        values = dict(row)
        for name in ("period_start", "period_end", "updated_at"):
            values[name] = _utc(values[name])
        for name in ("newest_window_end", "last_event_timestamp"):
            values[name] = _utc(values[name]) if values[name] is not None else None
        bind.execute(states.insert(), {**values, "period_id": pid})
    for (customer_id, start), pid in ids.items():
        link = links[customer_id]
        bind.execute(
            sa.text(
                "UPDATE forward_batches SET period_id = :pid, stripe_customer_id = :stripe "
                "WHERE customer_id = :customer AND period_start = :start"
            ).bindparams(sa.bindparam("start", type_=UTC_TYPE)),
            {
                "pid": pid,
                "stripe": link["stripe_customer_id"],
                "customer": customer_id,
                "start": start,
            },
        )
    bind.execute(
        sa.text(
            "UPDATE forward_batches SET dead_reason = CASE WHEN last_error LIKE "
            "'%35 calendar days%' THEN 'too_old' ELSE 'rejected' END WHERE state = 'dead'"
        )
    )
    bind.execute(
        sa.text(
            "UPDATE forwards SET period_id = (SELECT b.period_id FROM forward_batches b "
            "WHERE b.id = forwards.batch_id) WHERE batch_id IS NOT NULL"
        )
    )


def downgrade() -> None:
    raise NotImplementedError("0004 reshapes billing state; restore a backup to go back")
