"""The reconcile result's state: in_sync, drifting or settling, decided once a settle delay passed.

Rows written before this revision have no state; readers fall back to ``in_sync`` and the
pending forwards, as they did before.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reconcile_results") as batch:
        batch.add_column(sa.Column("state", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reconcile_results") as batch:
        batch.drop_column("state")
