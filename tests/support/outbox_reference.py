"""The outbox rows of report rows, spelled out: what the writer's statements must derive.

The writer never builds these rows in Python (each database derives them from the report rows
it inserts, see ``collector.adapters.db.report_insert``); tests store these through SQLAlchemy's
typed insert and compare what the database holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from collector.adapters.db.outbox import outbox_metrics


def forward_rows(reports: Sequence[Mapping[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """One forward per metric of each report row, without ``report_pk``: its report's key."""
    return [
        {
            "report_id": report["report_id"],
            "customer_id": report["customer_id"],
            "instance_id": report["instance_id"],
            "metric": name,
            "kind": "report",
            "window_start": report["window_start"],
            "window_end": report["window_end"],
            "value": text,
            "state": "pending",
            "batch_id": None,
            "period_id": None,
            "generation": 0,
            "created_at": now,
        }
        for report in reports
        for name, text in outbox_metrics(report)
    ]
