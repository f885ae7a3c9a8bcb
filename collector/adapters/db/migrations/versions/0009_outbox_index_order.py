"""Outbox indexes a new row appends to instead of scattering across.

The outbox's uniqueness leads with the report's key, which grows with every insert, so a batch
of new rows lands on the index's last pages; led by the report's random id, each row dirtied a
page of its own. The uniqueness is unchanged: a report's key and its id determine each other,
and markers (key 0) stay unique by their id. The period index holds only rows a period was
chosen for; the rows waiting for one, the newest, are not in it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 06:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

PERIOD_COLUMNS = ["period_id", "metric", "instance_id", "window_end"]
CHOSEN = sa.text("period_id IS NOT NULL")


def upgrade() -> None:
    op.drop_index("uq_forwards_report_metric", table_name="forwards")
    op.create_index(
        "uq_forwards_report_metric", "forwards", ["report_pk", "report_id", "metric"], unique=True
    )
    op.drop_index("ix_forwards_period", table_name="forwards")
    op.create_index(
        "ix_forwards_period",
        "forwards",
        PERIOD_COLUMNS,
        sqlite_where=CHOSEN,
        postgresql_where=CHOSEN,
    )


def downgrade() -> None:
    op.drop_index("ix_forwards_period", table_name="forwards")
    op.create_index("ix_forwards_period", "forwards", PERIOD_COLUMNS)
    op.drop_index("uq_forwards_report_metric", table_name="forwards")
    op.create_index("uq_forwards_report_metric", "forwards", ["report_id", "metric"], unique=True)
