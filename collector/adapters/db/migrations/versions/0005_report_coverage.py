"""Coverage per window: which metrics had no sample, and how completely each was measured.

Reports stored before this revision carried no such record, so they read back as measured in
full: ``unmeasured`` is ``[]`` and ``coverage`` is ``{}``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 04:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_reports") as table:
        table.add_column(
            sa.Column("unmeasured", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
        table.add_column(
            sa.Column("coverage", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("usage_reports") as table:
        table.drop_column("coverage")
        table.drop_column("unmeasured")
