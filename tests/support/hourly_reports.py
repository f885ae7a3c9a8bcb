"""Random hourly reports after a subscription began, as the crash and scale-out tests send."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any


def hourly_reports(
    period_start: int, customers: Sequence[str], hours: int, rng: random.Random
) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, float]]]]:
    """Hourly windows from the hour after ``period_start``, ending in the past, shuffled.

    Returns the report bodies and, per customer, each window's metrics in time order.
    """
    first = datetime.fromtimestamp(period_start, UTC).replace(
        minute=0, second=0, microsecond=0
    ) + timedelta(hours=1)
    windows: dict[str, list[dict[str, float]]] = {
        c: [
            {
                "mqtt_messages": rng.randint(0, 50_000),
                "devices": rng.randint(1, 40),
                "storage_gb": round(rng.uniform(0, 80), 2),
            }
            for _ in range(hours)
        ]
        for c in customers
    }
    bodies = [
        {
            "customer_id": c,
            "instance_id": "cluster-1",
            "window_start": (first + timedelta(hours=h)).isoformat(),
            "window_end": (first + timedelta(hours=h + 1)).isoformat(),
            "metrics": windows[c][h],
        }
        for c in customers
        for h in range(hours)
    ]
    assert first + timedelta(hours=hours) < datetime.now(UTC)
    rng.shuffle(bodies)
    return bodies, windows
