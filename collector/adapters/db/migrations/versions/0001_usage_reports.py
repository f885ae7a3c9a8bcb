"""Usage reports.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from collector.adapters.db.tables import BigId, UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_reports",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("report_id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("instance_id", sa.String(128), nullable=False),
        sa.Column("window_start", UtcDateTime(), nullable=False),
        sa.Column("window_end", UtcDateTime(), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.Column("legacy", sa.Boolean(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("active_devices", sa.BigInteger(), nullable=True),
        sa.Column("total_devices", sa.BigInteger(), nullable=True),
        sa.Column("partial", sa.Boolean(), nullable=False),
        sa.Column("missing", sa.JSON(), nullable=False),
        sa.Column("agent_version", sa.String(64), nullable=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_usage_reports"),
        sa.UniqueConstraint("report_id", name="uq_usage_reports_report_id"),
    )
    op.create_index(
        "ix_usage_reports_customer_window", "usage_reports", ["customer_id", "window_end", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_usage_reports_customer_window", table_name="usage_reports")
    op.drop_table("usage_reports")
