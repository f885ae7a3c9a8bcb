"""What the billing-edge tests share: their constants, their own arithmetic and reporting.

Subscriptions start at ``START`` (2026-03-01 12:00 UTC), so periods run from noon to noon:
Mar 1 12:00 to Apr 1 12:00, then to May 1 12:00, and so on.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.forwarding import (
    Harness,
    Subscription,
    window_report,
)
from tests.support.stripe_sandbox import START
from tests.support.usage_recorder import UsageRecorder

MODES = ["meter_events", "meter_event_stream", "usage_records"]
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
PERIOD_REFRESH = 120  # COLLECTOR_STRIPE_PERIOD_REFRESH for these tests (seconds)
PROD, STAGING = "acme-prod", "acme-staging"


def at(day: int, hour: int = 0, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def usage(devices: int, storage_gb: float, mqtt_messages: int) -> dict[str, float]:
    return {"devices": devices, "storage_gb": storage_gb, "mqtt_messages": mqtt_messages}


def bill(devices: int, storage_gb: int, mqtt_messages: int) -> dict[str, int]:
    return {"device_usage": devices, "storage_gb": storage_gb, "mqtt_messages": mqtt_messages}


async def report_hours(
    h: Harness,
    customer: str,
    windows: list[dict[str, float]],
    *,
    first_hour: int = 1,
    instance: str = "cluster",
    settle: bool = True,
) -> None:
    """Hourly windows from ``START``, each reported a minute after it ends."""
    for hour, metrics in enumerate(windows, start=first_hour):
        end = START + hour * HOUR
        await h.report(window_report(customer, end - HOUR, end, metrics, instance))
        if settle:
            await h.settle()


def sent_to(recorder: UsageRecorder, subscription: Subscription, since: datetime) -> list[Any]:
    """Usage Stripe received for ``subscription``'s customer (or items) at or after ``since``."""
    moment = int(since.timestamp())
    items = set(subscription.items.values())
    return [
        u
        for u in recorder.sent
        if u.received_at >= moment
        and (u.customer == subscription.stripe_customer_id or u.target in items)
    ]
