"""The background reconciler's verdict, as `make demo` prints it from `GET /api/reconciliation`.

`/reconcile`, which the demo calls to read Stripe's side, stores its result too; the table waits
for results checked after a given moment, so what it shows is the background reconciler's own
latest round, not the demo's call.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from demo.stripe_phase import wait_until

HEADER = ("customer", "metric", "collector", "Stripe", "drift", "state")


def reconciled_after(
    collector_url: str, operator: dict[str, str], after: datetime, timeout: float
) -> list[dict[str, Any]]:
    """Every customer's latest result, once each was checked by the reconciler after ``after``."""

    def fresh() -> list[dict[str, Any]] | None:
        answer = httpx.get(f"{collector_url}/api/reconciliation", headers=operator, timeout=10)
        answer.raise_for_status()
        results: list[dict[str, Any]] = answer.json()
        checked = [datetime.fromisoformat(r["checked_at"]) for r in results]
        return results if results and all(at > after for at in checked) else None

    found: list[dict[str, Any]] = wait_until(
        fresh, timeout, "the background reconciler to check every customer again"
    )
    return found


def drift_rows(results: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """One row per customer and metric: both values, Stripe minus collector, and the state."""
    return [
        (
            result["customer_id"],
            metric["metric"],
            "-" if metric["collector"] is None else str(metric["collector"]),
            "-" if metric["stripe"] is None else str(metric["stripe"]),
            str(metric["difference"]),
            metric["state"],
        )
        for result in results
        for metric in result["metrics"]
    ]


def print_drift_table(results: list[dict[str, Any]]) -> None:
    rows = drift_rows(results)
    widths = [max(len(row[i]) for row in [HEADER, *rows]) for i in range(len(HEADER))]
    for row in [HEADER, *rows]:
        name, metric, collector, stripe, drift, state = row
        print(
            f"{name:<{widths[0]}}  {metric:<{widths[1]}}  {collector:>{widths[2]}}  "
            f"{stripe:>{widths[3]}}  {drift:>{widths[4]}}  {state}"
        )


def all_in_sync(results: list[dict[str, Any]]) -> bool:
    return bool(results) and all(r["state"] == "in_sync" for r in results)
