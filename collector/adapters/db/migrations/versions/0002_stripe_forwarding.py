"""Stripe forwarding: the outbox, batches, meter state and customer links.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 09:58:04.079811
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from collector.adapters.db.tables import BigId, UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "billing_periods",
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("period_start", UtcDateTime(), nullable=False),
        sa.Column("period_end", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "period_start", name=op.f("pk_billing_periods")),
    )
    op.create_table(
        "forward_batches",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("metric", sa.String(length=63), nullable=False),
        sa.Column("semantics", sa.String(length=16), nullable=False),
        sa.Column("mode", sa.String(length=24), nullable=False),
        sa.Column("period_start", UtcDateTime(), nullable=False),
        sa.Column("period_end", UtcDateTime(), nullable=False),
        sa.Column("identifier", sa.String(length=100), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("raw_value", sa.String(length=40), nullable=False),
        sa.Column("event_timestamp", UtcDateTime(), nullable=False),
        sa.Column("newest_window_end", UtcDateTime(), nullable=False),
        sa.Column("members", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", UtcDateTime(), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=1000), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("sent_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forward_batches")),
        sa.UniqueConstraint("identifier", name=op.f("uq_forward_batches_identifier")),
    )
    with op.batch_alter_table("forward_batches", schema=None) as batch_op:
        batch_op.create_index("ix_forward_batches_due", ["state", "next_attempt_at"], unique=False)
        batch_op.create_index(
            "uq_forward_batches_open",
            ["customer_id", "metric"],
            unique=True,
            postgresql_where=sa.text("state = 'pending'"),
            sqlite_where=sa.text("state = 'pending'"),
        )

    op.create_table(
        "forwards",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("report_pk", sa.BigInteger(), nullable=False),
        sa.Column("report_id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("metric", sa.String(length=63), nullable=False),
        sa.Column("window_start", UtcDateTime(), nullable=False),
        sa.Column("window_end", UtcDateTime(), nullable=False),
        sa.Column("value", sa.String(length=40), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("batch_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forwards")),
    )
    with op.batch_alter_table("forwards", schema=None) as batch_op:
        batch_op.create_index("ix_forwards_batch", ["batch_id"], unique=False)
        batch_op.create_index(
            "ix_forwards_pending", ["state", "customer_id", "metric", "window_end"], unique=False
        )
        batch_op.create_index("uq_forwards_report_metric", ["report_id", "metric"], unique=True)

    op.create_table(
        "meter_state",
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("metric", sa.String(length=63), nullable=False),
        sa.Column("period_start", UtcDateTime(), nullable=False),
        sa.Column("period_end", UtcDateTime(), nullable=False),
        sa.Column("raw_total", sa.String(length=40), nullable=False),
        sa.Column("billed_total", sa.BigInteger(), nullable=False),
        sa.Column("last_value", sa.String(length=40), nullable=True),
        sa.Column("newest_window_end", UtcDateTime(), nullable=True),
        sa.Column("last_event_timestamp", UtcDateTime(), nullable=True),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint(
            "customer_id", "metric", "period_start", name=op.f("pk_meter_state")
        ),
    )
    op.create_table(
        "stripe_customers",
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("stripe_customer_id", sa.String(length=64), nullable=False),
        sa.Column("subscription_id", sa.String(length=64), nullable=True),
        sa.Column("subscription_status", sa.String(length=32), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_stripe_customers")),
    )
    op.create_table(
        "stripe_subscription_items",
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("lookup_key", sa.String(length=200), nullable=False),
        sa.Column("subscription_item_id", sa.String(length=64), nullable=False),
        sa.Column("price_id", sa.String(length=64), nullable=False),
        sa.Column("period_start", UtcDateTime(), nullable=True),
        sa.Column("period_end", UtcDateTime(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint(
            "customer_id", "lookup_key", name=op.f("pk_stripe_subscription_items")
        ),
    )
    op.create_table(
        "stripe_webhook_events",
        sa.Column("event_id", sa.String(length=100), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("received_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_stripe_webhook_events")),
    )


def downgrade() -> None:
    op.drop_table("stripe_webhook_events")
    op.drop_table("stripe_subscription_items")
    op.drop_table("stripe_customers")
    op.drop_table("meter_state")
    with op.batch_alter_table("forwards", schema=None) as batch_op:
        batch_op.drop_index("uq_forwards_report_metric")
        batch_op.drop_index("ix_forwards_pending")
        batch_op.drop_index("ix_forwards_batch")

    op.drop_table("forwards")
    with op.batch_alter_table("forward_batches", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_forward_batches_open",
            postgresql_where=sa.text("state = 'pending'"),
            sqlite_where=sa.text("state = 'pending'"),
        )
        batch_op.drop_index("ix_forward_batches_due")

    op.drop_table("forward_batches")
    op.drop_table("billing_periods")
