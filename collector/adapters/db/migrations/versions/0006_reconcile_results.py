"""The latest reconcile result per customer, so lists can show who drifts without calling Stripe.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 04:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from collector.adapters.db.tables import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reconcile_results",
        sa.Column("customer_id", sa.String(128), primary_key=True),
        sa.Column("checked_at", UtcDateTime(), nullable=False),
        sa.Column("stripe_customer_id", sa.String(64), nullable=False),
        sa.Column("period_start", UtcDateTime(), nullable=False),
        sa.Column("period_end", UtcDateTime(), nullable=False),
        sa.Column("in_sync", sa.Boolean(), nullable=False),
        sa.Column("drift", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("reconcile_results")
