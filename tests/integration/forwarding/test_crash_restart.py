"""SIGKILL the collector mid-forward, again and again, while Stripe fails often: still exact.

The collector runs as a real `usage-collector serve` process; the sandbox runs on the real clock
with 500s, 429s, dropped connections (before and after Stripe acted) and latency, so calls are in
flight when the process dies. What Stripe bills must equal the truth computed from the reports,
with no dead letters and no meter event accepted twice.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from common.clock import SystemClock
from tests.support.collector_process import CollectorProcess, clean_environment
from tests.support.hourly_reports import hourly_reports
from tests.support.meter_totals import EVENT_OF, billed
from tests.support.stripe_sandbox import API_KEY, Sandbox, running_sandbox

FAULTS = {
    "error_500_rate": 0.2,
    "error_429_rate": 0.1,
    "drop_rate": 0.05,
    "drop_after_rate": 0.05,
    "error_500_after_rate": 0.05,
    "latency_seconds": 0.05,
}
WEBHOOK_SECRET = "whsec_crash_restart_test"
PRICE_KEYS = ("device_usage", "mqtt_messages", "storage_gb")
CUSTOMERS = ("cust-crash-a", "cust-crash-b")
HOURS = 30
KILLS = 3
LIMIT_SECONDS = 45.0

CASES = [
    pytest.param("meter_events", "sqlite", False, id="meter_events-sqlite-one_per_window"),
    pytest.param("meter_event_stream", "sqlite", True, id="meter_event_stream-sqlite-coalesced"),
    pytest.param("usage_records", "sqlite", True, id="usage_records-sqlite-coalesced"),
    pytest.param(
        "meter_events",
        "postgres",
        True,
        id="meter_events-postgres-coalesced",
        marks=pytest.mark.postgres,
    ),
    pytest.param(
        "meter_event_stream",
        "postgres",
        False,
        id="meter_event_stream-postgres-one_per_window",
        marks=pytest.mark.postgres,
    ),
]


def truth(windows: list[dict[str, float]]) -> dict[str, int]:
    """Independent ground truth: sum of deltas, newest device count, peak storage rounded up."""
    return {
        "mqtt_messages": int(sum(w["mqtt_messages"] for w in windows)),
        "device_usage": int(windows[-1]["devices"]),
        "storage_gb": math.ceil(max(w["storage_gb"] for w in windows)),
    }


def secret_from(output: str) -> str:
    """The secret `tokens create` / `keys create` print on their last line."""
    return output.strip().splitlines()[-1].strip()


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


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    backend = request.node.callspec.params["backend"]
    if backend == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite+aiosqlite:///{tmp_path / 'collector.db'}"


@pytest.fixture
def real_time_sandbox() -> Iterator[Sandbox]:
    with running_sandbox(clock=SystemClock(), seed=11) as sandbox:
        yield sandbox


class Scenario:
    """One customer set-up, the reports to post and the credentials to post them with."""

    def __init__(self, collector: CollectorProcess, sandbox: Sandbox, mode: str) -> None:
        self.collector = collector
        self.sandbox = sandbox
        self.mode = mode
        self.meters: dict[str, str] = {}
        self.stripe_customers: dict[str, str] = {}
        self.tokens: dict[str, str] = {}
        self.viewer = ""
        self.period_start = 0

    def prepare(self) -> None:
        """Stripe objects (CLI), subscriptions back-dated two days (SDK), links by webhook."""
        legacy = ("--legacy",) if self.mode == "usage_records" else ()
        self.meters, prices = setup_ids(self.collector.run_cli("stripe", "setup", *legacy))
        control, client = self.sandbox.control, self.sandbox.client
        control.configure_webhooks(f"{self.collector.url}/api/stripe/webhook", WEBHOOK_SECRET)
        now = int(time.time())
        control.set_clock(now - 2 * 86400)
        for customer_id in CUSTOMERS:
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
        assert deliveries
        assert all(d["status"] == "delivered" for d in deliveries), deliveries
        linked = {
            c["customer_id"]: c
            for c in json.loads(self.collector.run_cli("customers", "list", "--output", "json"))
        }
        for customer_id, stripe_id in self.stripe_customers.items():
            assert linked[customer_id]["stripe_customer_id"] == stripe_id, linked
            assert linked[customer_id]["subscription_id"].startswith("sub_"), linked
            token = self.collector.run_cli("tokens", "create", "--customer", customer_id)
            self.tokens[customer_id] = secret_from(token)
        self.viewer = secret_from(self.collector.run_cli("keys", "create", "--role", "viewer"))

    def reports(self, rng: random.Random) -> tuple[list[dict[str, Any]], dict[str, list[dict]]]:
        """Hourly windows after the subscription began, ending in the past, in shuffled order."""
        return hourly_reports(self.period_start, CUSTOMERS, HOURS, rng)

    def post(self, http: httpx.Client, body: dict[str, Any]) -> None:
        token = self.tokens[body["customer_id"]]
        answer = http.post(
            f"{self.collector.url}/api/usage/report",
            json=body,
            headers={"authorization": f"Bearer {token}"},
        )
        assert answer.status_code in (200, 201), answer.text

    def get(self, http: httpx.Client, path: str, **params: Any) -> Any:
        answer = http.get(
            f"{self.collector.url}{path}",
            params=params,
            headers={"authorization": f"Bearer {self.viewer}"},
        )
        assert answer.status_code == 200, answer.text
        return answer.json()


def wait_in_flight(sandbox: Sandbox, calls_before: int) -> None:
    """Until a call of this wave is in flight at Stripe: received, not yet answered (bounded).

    Killing then means Stripe acts on a call whose answer the collector never sees.
    """
    deadline = time.monotonic() + LIMIT_SECONDS
    while time.monotonic() < deadline:
        recent = sandbox.app.faults.calls[calls_before:]
        if any(c.status is None and c.fault is None for c in recent):
            return
        time.sleep(0.002)
    pytest.fail("no Stripe call was ever in flight to be interrupted")


def wait_settled(scenario: Scenario, http: httpx.Client) -> dict[str, Any]:
    deadline = time.monotonic() + LIMIT_SECONDS
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = scenario.get(http, "/api/forwarding/status")
        waiting = {"pending", "batched"} & set(status["forwards"])
        if not waiting and not status["batches"].get("pending"):
            return status
        time.sleep(0.1)
    pytest.fail(f"forwarding did not settle: {status}")


def billed_to(scenario: Scenario, customer_id: str) -> dict[str, int]:
    """Stripe's own aggregate for the period, read through the SDK (meter modes)."""
    return billed(
        scenario.sandbox.client,
        scenario.meters,
        scenario.stripe_customers[customer_id],
        scenario.period_start,
    )


@pytest.mark.parametrize(("mode", "backend", "coalesce"), CASES)
def test_sigkill_mid_forward_under_faults_bills_exactly(
    mode: str,
    backend: str,
    coalesce: bool,
    database_url: str,
    real_time_sandbox: Sandbox,
    tmp_path: Path,
) -> None:
    sandbox = real_time_sandbox
    environment = clean_environment(
        COLLECTOR_DATABASE_URL=database_url,
        COLLECTOR_STRIPE_API_KEY=API_KEY,
        COLLECTOR_STRIPE_API_BASE=sandbox.url,
        COLLECTOR_STRIPE_MODE=mode,
        COLLECTOR_STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        COLLECTOR_STRIPE_COALESCE=str(coalesce).lower(),
        COLLECTOR_STRIPE_MAX_RPS="200",
        COLLECTOR_STRIPE_TIMEOUT="5",
        COLLECTOR_STRIPE_LEASE="6",
        COLLECTOR_STRIPE_BACKOFF_CAP="1",
        COLLECTOR_FORWARDER_IDLE_SLEEP="0.05",
        COLLECTOR_RATE_LIMIT_RPS="1000",
        COLLECTOR_RATE_LIMIT_BURST="1000",
        COLLECTOR_LOG_LEVEL="warning",
    )
    rng = random.Random(f"crash-{mode}-{backend}")
    with (
        CollectorProcess(environment, tmp_path / "collector.log") as collector,
        httpx.Client(timeout=30.0) as http,
    ):
        scenario = Scenario(collector, sandbox, mode)
        scenario.prepare()
        bodies, windows = scenario.reports(rng)
        sandbox.control.faults(seed=5, **FAULTS)
        waves = [bodies[i :: KILLS + 1] for i in range(KILLS + 1)]
        for wave_number, wave in enumerate(waves):
            calls_before = len(sandbox.app.faults.calls)
            for body in wave:
                scenario.post(http, body)
            if wave_number < KILLS:
                wait_in_flight(sandbox, calls_before)
                collector.kill()
                collector.start()
                scenario.post(http, rng.choice(bodies))  # a repeat adds nothing
        status = wait_settled(scenario, http)
        sandbox.control.clear_faults()

        assert collector.kills == KILLS
        faulted = Counter(c.fault for c in sandbox.app.faults.calls if c.fault)
        assert sum(faulted.values()) > 0, "no fault was injected"
        assert "dead" not in status["batches"], scenario.get(
            http, "/api/forwarding/batches", state="dead"
        )
        assert set(status["forwards"]) <= {"sent", "superseded"}, status
        assert sum(status["forwards"].values()) == len(bodies) * 3
        for customer_id in CUSTOMERS:
            reconciliation = scenario.get(http, f"/api/usage/{customer_id}/reconcile")
            assert reconciliation["in_sync"], reconciliation
            stripe_values = {
                EVENT_OF[m["metric"]]: int(m["stripe_value"] or 0)
                for m in reconciliation["metrics"]
                if m["metric"] in EVENT_OF
            }
            assert stripe_values == truth(windows[customer_id])
            if mode != "usage_records":
                assert billed_to(scenario, customer_id) == truth(windows[customer_id])

        sent = scenario.get(http, "/api/forwarding/batches", state="sent", limit=1000)
        assert len(sent) == status["batches"]["sent"]
        if mode == "usage_records":
            applied = sandbox.control.usage_records()
            assert len(applied) == len(sent), "a usage record was applied twice (or lost)"
        else:
            accepted = Counter(e["identifier"] for e in sandbox.control.meter_events())
            assert max(accepted.values()) == 1
            assert set(accepted) == {b["identifier"] for b in sent}
            assert sandbox.control.stream_rejections() == []
