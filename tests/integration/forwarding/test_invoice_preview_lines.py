"""Each invoice-preview line says which metric it bills (issue 12: every line read alike)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from common.clock import ManualClock
from tests.support.forwarding import api_client, harness, hourly_report
from tests.support.stripe_sandbox import Sandbox

TIMES = "\N{MULTIPLICATION SIGN}"


async def test_invoice_preview_lines_say_which_metric_they_bill(
    stripe_sandbox: Sandbox, sandbox_clock: ManualClock, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"
    async with harness(stripe_sandbox.url, sandbox_clock, url, "meter_events") as h:
        await h.subscribe("cust_lines", extra_prices=(h.prices["api_requests"],))
        start = h.clock.now()
        h.clock.set(start + timedelta(hours=1, minutes=1))
        await h.ingest(
            hourly_report(
                "cust_lines",
                start,
                1,
                devices=8,
                mqtt_messages=1501,
                storage_gb=2.5,
                api_requests=7,
            )
        )
        await h.settle()
        async with api_client(h, "viewer") as api:
            answer = await api.get("/api/usage/cust_lines/invoice-preview")

    assert answer.status_code == 200, answer.text
    lines = {line["lookup_key"]: line for line in answer.json()["lines"]}
    assert {key: line["description"] for key, line in lines.items()} == {
        "device_usage": f"8 {TIMES} IoT platform usage: devices (at $5.00 / month)",
        "mqtt_messages": f"2 {TIMES} IoT platform usage: mqtt_messages (at $0.10 / month)",
        "storage_gb": f"3 {TIMES} IoT platform usage: storage_gb (at $0.50 / month)",
        "api_requests": f"1 {TIMES} IoT platform usage: api_requests (at $0.10 / month)",
    }
    assert answer.json()["total"] == 4000 + 20 + 150 + 10
