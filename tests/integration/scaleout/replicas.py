"""Several `usage-collector serve` processes on one PostgreSQL, set up against the Stripe sandbox.

The replicas share one environment (one database, one Stripe), each on its own port with its
own log. Customers are subscribed in the sandbox with ``metadata.customer_id`` and linked by the
webhook, as in production; reports are posted to whichever replica is alive.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.collector_process import CollectorProcess
from tests.support.credentials import issue_key, issue_token
from tests.support.leases import log_events

__all__ = ["Replicas", "log_events", "scrape", "truth"]
from tests.support.hourly_reports import hourly_reports
from tests.support.meter_totals import billed
from tests.support.stripe_sandbox import Sandbox

WEBHOOK_SECRET = "whsec_scaleout_test"
PRICE_KEYS = ("device_usage", "mqtt_messages", "storage_gb")


def setup_ids(output: str) -> tuple[dict[str, str], dict[str, str]]:
    """Meter ids by event name and price ids by lookup key from `stripe setup`."""
    meters: dict[str, str] = {}
    prices: dict[str, str] = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "meter":
            meters[parts[2]] = parts[1]
        elif len(parts) == 3 and parts[0] == "price":
            prices[parts[2]] = parts[1]
    return meters, prices


def truth(windows: Sequence[dict[str, float]]) -> dict[str, int]:
    """Independent ground truth: deltas summed, the newest device count, the peak rounded up."""
    return {
        "mqtt_messages": int(sum(w["mqtt_messages"] for w in windows)),
        "device_usage": int(windows[-1]["devices"]),
        "storage_gb": math.ceil(max(w["storage_gb"] for w in windows)),
    }


@dataclass
class Replicas:
    """N collector processes on one database; index i is always the same port and log."""

    processes: list[CollectorProcess]
    sandbox: Sandbox
    meters: dict[str, str] = field(default_factory=dict)
    stripe_customers: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    viewer: str = ""
    period_start: int = 0

    @classmethod
    def create(
        cls, count: int, environment: dict[str, str], sandbox: Sandbox, logs: Path
    ) -> Replicas:
        return cls(
            [CollectorProcess(environment, logs / f"replica-{i}.log") for i in range(count)],
            sandbox,
        )

    def start_all(self) -> None:
        for process in self.processes:
            process.start()  # one after another: the first start migrates the database

    def stop_all(self) -> None:
        for process in self.processes:
            process.stop()

    def live(self) -> list[CollectorProcess]:
        return [p for p in self.processes if p.running]

    @property
    def first(self) -> CollectorProcess:
        return self.live()[0]

    def prepare(self, customers: Sequence[str]) -> None:
        """Meters and prices (CLI), subscriptions back-dated two days (SDK), links by webhook."""
        self.meters, prices = setup_ids(self.first.run_cli("stripe", "setup"))
        control, client = self.sandbox.control, self.sandbox.client
        control.configure_webhooks(f"{self.first.url}/api/stripe/webhook", WEBHOOK_SECRET)
        control.set_clock(int(time.time()) - 2 * 86400)
        for customer_id in customers:
            customer = client.v1.customers.create({"metadata": {"customer_id": customer_id}})
            subscription = client.v1.subscriptions.create(
                {
                    "customer": customer.id,
                    "items": [{"price": prices[key]} for key in PRICE_KEYS],
                    "metadata": {"customer_id": customer_id},
                }
            )
            self.period_start = int(subscription["items"].data[0]["current_period_start"])
            self.stripe_customers[customer_id] = str(customer.id)
        control.set_clock(int(time.time()))
        deliveries = control.flush_webhooks()
        assert all(d["status"] == "delivered" for d in deliveries), deliveries
        database_url = self.first.environment["COLLECTOR_DATABASE_URL"]
        self.viewer = issue_key(database_url, "viewer").secret
        for customer_id in customers:
            self.tokens[customer_id] = issue_token(database_url, customer_id).secret
        linked = {c["customer_id"]: c for c in self.get("/api/customers")}
        for customer_id, stripe_id in self.stripe_customers.items():
            assert linked[customer_id]["stripe_customer_id"] == stripe_id, linked

    def reports(
        self, customers: Sequence[str], hours: int, rng: random.Random
    ) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, float]]]]:
        """Hourly windows after the subscription began, ending in the past, shuffled."""
        return hourly_reports(self.period_start, customers, hours, rng)

    def post_all(self, bodies: Sequence[dict[str, Any]], concurrency: int = 16) -> None:
        """POST every body at once from ``concurrency`` clients, spread over the live replicas."""
        asyncio.run(self._post_all(bodies, concurrency))

    async def _post_all(self, bodies: Sequence[dict[str, Any]], concurrency: int) -> None:
        gate = asyncio.Semaphore(concurrency)
        urls = [p.url for p in self.live()]
        async with httpx.AsyncClient(timeout=30.0) as http:

            async def post(n: int, body: dict[str, Any]) -> None:
                headers = {"authorization": f"Bearer {self.tokens[body['customer_id']]}"}
                async with gate:
                    answer = await http.post(
                        f"{urls[n % len(urls)]}/api/usage/report", json=body, headers=headers
                    )
                assert answer.status_code in (200, 201), answer.text

            await asyncio.gather(*(post(n, b) for n, b in enumerate(bodies)))

    def get(self, path: str, **params: Any) -> Any:
        answer = httpx.get(
            f"{self.first.url}{path}",
            params=params,
            headers={"authorization": f"Bearer {self.viewer}"},
            timeout=30.0,
        )
        assert answer.status_code == 200, answer.text
        return answer.json()

    def billed(self, customer_id: str) -> dict[str, int]:
        """Stripe's own aggregate of each meter for the customer, read through the SDK."""
        return billed(
            self.sandbox.client,
            self.meters,
            self.stripe_customers[customer_id],
            self.period_start,
        )


def scrape(process: CollectorProcess) -> dict[str, float]:
    """The process's /metrics as ``name{label=value,...}`` -> value."""
    text = httpx.get(f"{process.url}/metrics", timeout=10.0).text
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples
