"""Reconcile flags a billing period with windows that were not measured in full (issue 11,
defect 5): in sync with Stripe says nothing about a window nobody measured."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from common.clock import ManualClock
from common.schema import UsageReport
from tests.support.forwarding import api_client, harness, new_customer
from tests.support.stripe_sandbox import Sandbox

HOUR = timedelta(hours=1)


def report(customer_id: str, start: datetime, hour: int, **fields: Any) -> UsageReport:
    end = start + hour * HOUR
    return UsageReport.model_validate(
        {
            "customer_id": customer_id,
            "instance_id": "cluster",
            "window_start": end - HOUR,
            "window_end": end,
            "metrics": {"devices": 4, "mqtt_messages": 100, "storage_gb": 2},
            **fields,
        }
    )


async def test_reconcile_flags_a_period_with_unmeasured_and_missing_windows(
    stripe_sandbox: Sandbox, sandbox_clock: ManualClock, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'c.db'}"
    async with harness(stripe_sandbox.url, sandbox_clock, url, "meter_events") as h:
        customer, other = new_customer(), new_customer()
        await h.subscribe(customer)
        start = h.clock.now()
        await h.report(report(customer, start, 1))
        await h.report(report(other, start, 1, metrics={}, unmeasured=["mqtt_messages"]))
        await h.settle()
        async with api_client(h, "viewer") as api:
            measured = (await api.get(f"/api/usage/{customer}/reconcile")).json()
        assert (measured["complete"], measured["incomplete_windows"]) == (True, 0)
        assert measured["in_sync"] is True

        await h.report(
            report(
                customer,
                start,
                2,
                metrics={"devices": 4, "storage_gb": 2},
                unmeasured=["mqtt_messages"],
                coverage={"mqtt_messages": {"samples": 0, "expected": 240}},
            )
        )
        await h.report(
            report(customer, start, 3, metrics={"mqtt_messages": 50}, missing=["devices"])
        )
        await h.settle()
        async with api_client(h, "viewer") as api:
            answer = await api.get(f"/api/usage/{customer}/reconcile")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["complete"], body["incomplete_windows"]) == (False, 2)
        assert {m["metric"]: m["incomplete_windows"] for m in body["metrics"]} == {
            "devices": 1,
            "mqtt_messages": 1,
            "storage_gb": 0,
            "api_requests": 0,
        }
        assert body["in_sync"] is True
