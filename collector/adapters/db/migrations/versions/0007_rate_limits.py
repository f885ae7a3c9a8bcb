"""Rate limits every replica shares: a token bucket per key and call slots per limiter.

Times in both tables are seconds on one shared timeline (the database's clock in production),
not timestamps: the arithmetic is done in SQL, in one statement per operation. SQLite keeps its
limits in memory and never reads these tables; they exist there only so both schemas match.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 05:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_buckets",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("stamp", sa.Float(), nullable=False),
        sa.Column("granted", sa.Integer(), nullable=False),
    )
    op.create_table(
        "rate_slots",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("slot", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("busy_until", sa.Float(), nullable=False),
        sa.Column("holder", sa.String(128), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("rate_slots")
    op.drop_table("rate_buckets")
