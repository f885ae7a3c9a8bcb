"""Stripe failing often, in every way it can, changes nothing in what is billed."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import pytest

from common.clock import ManualClock
from tests.integration.forwarding.test_exactness import MODES, billed, truth
from tests.support.forwarding import harness, hourly_report, new_customer
from tests.support.stripe_sandbox import Sandbox

FAULTS = {
    "error_500_rate": 0.2,
    "error_429_rate": 0.1,
    "drop_rate": 0.05,
    "drop_after_rate": 0.05,
    "error_500_after_rate": 0.05,
}


@pytest.mark.parametrize("mode", MODES)
async def test_faults_leave_the_total_exact_and_no_dead_letters(
    mode: str, stripe_sandbox: Sandbox, sandbox_clock: ManualClock, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'f.db'}"
    async with harness(stripe_sandbox.url, sandbox_clock, url, mode, stripe_coalesce=False) as h:
        customers = [new_customer() for _ in range(3)]
        for customer in customers:
            await h.subscribe(customer)
        rng = random.Random(f"faults-{mode}")
        start = h.clock.now()
        windows = {
            c: [
                {
                    "mqtt_messages": rng.randint(0, 10_000),
                    "devices": rng.randint(1, 40),
                    "storage_gb": round(rng.uniform(0, 50), 2),
                }
                for _ in range(12)
            ]
            for c in customers
        }
        stripe_sandbox.control.faults(seed=7, **FAULTS)
        h.clock.set(start + timedelta(hours=12, minutes=1))
        for hour in range(1, 13):
            for customer in customers:
                await h.ingest(hourly_report(customer, start, hour, **windows[customer][hour - 1]))
            await h.forwarder.step()
        await h.settle(rounds=1000, step=timedelta(seconds=20))
        stripe_sandbox.control.clear_faults()

        faulted = [c for c in stripe_sandbox.control.calls() if c.get("fault")]
        assert len(faulted) >= 5
        for customer in customers:
            assert await billed(h, customer) == truth(windows[customer])
        status = await h.services.forwarding.status()
        assert "dead" not in status.batches
        assert status.forwards.get("sent", 0) + status.forwards.get("superseded", 0) == 3 * 12 * 3
