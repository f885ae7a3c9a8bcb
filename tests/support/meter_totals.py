"""What Stripe billed a customer, meter by meter, as the crash and scale-out tests compare it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

EVENT_OF = {"mqtt_messages": "mqtt_messages", "devices": "device_usage", "storage_gb": "storage_gb"}
"""Each metric's meter event name in those tests' catalogue."""


def billed(
    client: Any, meters: Mapping[str, str], stripe_customer: str, period_start: int
) -> dict[str, int]:
    """Stripe's own aggregate of each meter since ``period_start``, read through the SDK."""
    start = period_start - period_start % 60
    end = (int(time.time()) // 60 + 10) * 60
    totals: dict[str, int] = {}
    for event_name, meter_id in meters.items():
        if event_name not in EVENT_OF.values():
            continue
        summaries = client.v1.billing.meters.event_summaries.list(
            meter_id, {"customer": stripe_customer, "start_time": start, "end_time": end}
        )
        totals[event_name] = int(sum(s.aggregated_value for s in summaries.data))
    return totals
