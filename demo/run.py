"""`make demo`: the whole system on loopback, checked against the ground truth.

A Stripe sandbox, a collector on SQLite forwarding to it, a simulated customer instance (device
API and an MQTT message counter that grows by a known amount and restarts once), and one agent
reporting every few seconds. At the end the collector's totals and what Stripe would bill are
printed beside the ground truth, then the background reconciler's drift table, and the demo
exits 0 only if all three agree and the reconciler finds every metric in sync. Last, it prints
the console's URL and a viewer key, and keeps serving until Ctrl-C when run at a terminal
(`demo.console`).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx

from demo.console import announce, serve_until_interrupted, should_keep
from demo.drift import all_in_sync, print_drift_table, reconciled_after
from demo.processes import BIN, Processes, free_port, wait_until_ready
from demo.simulator import Simulator
from demo.stripe_phase import (
    API_KEY,
    WEBHOOK_SECRET,
    stripe_view,
    subscribe,
    wait_for_link,
    wait_forwarded,
)

CUSTOMER = "cust_demo"
RECONCILE_INTERVAL = 5
"""Seconds between the background reconciler's rounds in the demo (15 min by default)."""


def traffic(simulator: Simulator, stop: threading.Event, seed: int, reset_after: float) -> None:
    """Messages arrive at random; the broker restarts once, right after a scrape."""
    rng = random.Random(seed)
    started = time.monotonic()
    reset_done = False
    while not stop.wait(0.2):
        simulator.add_messages(rng.randint(0, 400))
        if not reset_done and time.monotonic() - started > reset_after:
            scrapes = simulator.scrapes
            while simulator.scrapes == scrapes and not stop.wait(0.05):
                pass
            simulator.reset_counter()
            reset_done = True


def create_secret(env: dict[str, str], *argv: str) -> str:
    """Run `usage-collector ARGV` (tokens/keys create) and return the secret it prints once."""
    completed = subprocess.run(
        [str(BIN / "usage-collector"), *argv],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return completed.stdout.strip().splitlines()[-1]


def collector_totals(url: str, viewer: dict[str, str]) -> dict[str, Decimal]:
    body = httpx.get(f"{url}/api/usage/{CUSTOMER}/totals", headers=viewer, timeout=10).json()
    return {t["name"]: Decimal(t["value"]) for t in body["totals"]}


def wait_for_report_after(
    url: str, scrapes_seen: int, simulator: Simulator, timeout: float, viewer: dict[str, str]
) -> None:
    """Wait until the agent has scraped again and the collector holds that window's report."""
    deadline = time.monotonic() + timeout
    while simulator.scrapes <= scrapes_seen and time.monotonic() < deadline:
        time.sleep(0.1)
    target = simulator.scrapes
    while time.monotonic() < deadline:
        history = httpx.get(
            f"{url}/api/usage/{CUSTOMER}", params={"limit": 1000}, headers=viewer, timeout=10
        ).json()
        if len(history["reports"]) >= target - 1:
            return
        time.sleep(0.2)
    raise RuntimeError("the agent's last report did not reach the collector in time")


def print_table(rows: list[tuple[str, str, str, str, bool]]) -> None:
    header = ("metric", "collector", "Stripe", "ground truth", "")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    for name, stored, billed, truth, ok in [(*header[:4], True), *rows]:
        mark = "" if name == "metric" else ("ok" if ok else "MISMATCH")
        print(
            f"{name:<{widths[0]}}  {stored:>{widths[1]}}  {billed:>{widths[2]}}  "
            f"{truth:>{widths[3]}}  {mark}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--windows", type=int, default=4, help="Report windows to run (count).")
    parser.add_argument("--interval", type=int, default=5, help="Agent interval (seconds).")
    parser.add_argument("--seed", type=int, default=7, help="Seed for the simulated traffic.")
    parser.add_argument(
        "--keep",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Keep the collector and console up until Ctrl-C after the checks [default: "
        "DEMO_KEEP, else only when run at a terminal and not under CI].",
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="usage-demo-"))
    processes = Processes(workdir)
    stop_traffic = threading.Event()
    print(f"demo: logs and databases in {workdir}")
    try:
        collector_port, sandbox_port = free_port(), free_port()
        collector_url = f"http://127.0.0.1:{collector_port}"
        sandbox_url = f"http://127.0.0.1:{sandbox_port}"
        sandbox = processes.start(
            "stripe-sandbox",
            [
                "usage-collector",
                "stripe",
                "sandbox",
                "--port",
                str(sandbox_port),
                "--webhook-url",
                f"{collector_url}/api/stripe/webhook",
                "--webhook-secret",
                WEBHOOK_SECRET,
            ],
            {},
        )
        wait_until_ready(f"{sandbox_url}/_sandbox/health", sandbox)
        print(f"demo: Stripe sandbox at {sandbox_url} (no Stripe account needed)")
        collector_env = {
            "COLLECTOR_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'usage.db'}",
            "COLLECTOR_STRIPE_MODE": "meter_events",
            "COLLECTOR_STRIPE_API_KEY": API_KEY,
            "COLLECTOR_STRIPE_API_BASE": sandbox_url,
            "COLLECTOR_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "COLLECTOR_FORWARDER_IDLE_SLEEP": "0.2",
            "COLLECTOR_LOG_JSON": "true",
            "COLLECTOR_RECONCILE_INTERVAL": f"{RECONCILE_INTERVAL}s",
            "COLLECTOR_RECONCILE_SETTLE": f"{2 * RECONCILE_INTERVAL}s",
        }
        collector = processes.start(
            "collector",
            ["usage-collector", "serve", "--port", str(collector_port)],
            collector_env,
        )
        wait_until_ready(f"{collector_url}/health/ready", collector)
        # Authentication stays on: the agent gets an ingest token, the demo a viewer key.
        token = create_secret(collector_env, "tokens", "create", "--customer", CUSTOMER)
        viewer_key = create_secret(collector_env, "keys", "create", "--role", "viewer")
        viewer = {"authorization": f"Bearer {viewer_key}"}
        console_key = create_secret(
            collector_env, "keys", "create", "--role", "viewer", "--name", "demo-console"
        )
        print(
            "demo: created an ingest token for the agent, a viewer key for the checks and one "
            "for the console"
        )
        print(f"demo: collector ready at {collector_url}")
        setup = subprocess.run(
            [str(BIN / "usage-collector"), "stripe", "setup"],
            env={**os.environ, **collector_env},
            capture_output=True,
            text=True,
            check=True,
        )
        print("demo: `usage-collector stripe setup` created the meters and prices:")
        print(
            "\n".join(
                f"      {line}"
                for line in setup.stdout.splitlines()
                if line[:5] in {"meter", "price"}
            )
        )
        stripe_customer = subscribe(sandbox_url, CUSTOMER)
        wait_for_link(collector_url, CUSTOMER, viewer)
        print(f"demo: subscribed {CUSTOMER} as {stripe_customer}; the webhook linked it")
        with Simulator(devices=25, active=18, page_size=10) as simulator:
            agent = processes.start(
                "agent",
                ["usage-agent", "run"],
                {
                    "AGENT_CUSTOMER_ID": CUSTOMER,
                    "AGENT_INSTANCE_ID": "demo-cluster",
                    "AGENT_COLLECTOR_URL": collector_url,
                    "AGENT_INTERVAL": f"{args.interval}s",
                    "AGENT_QUERY_OFFSET": "1s",
                    "AGENT_METRICS_URL": f"{simulator.url}/metrics",
                    "AGENT_DEVICE_API_URL": f"{simulator.url}/api/devices",
                    "AGENT_STATE_DIR": str(workdir / "agent-state"),
                    "AGENT_COLLECTOR_TOKEN": token,
                },
            )
            print(f"demo: agent reporting every {args.interval}s for {args.windows} windows")
            while simulator.scrapes == 0:
                if agent.poll() is not None:
                    raise RuntimeError(f"the agent exited early; see {workdir / 'agent.log'}")
                time.sleep(0.05)
            thread = threading.Thread(
                target=traffic,
                args=(simulator, stop_traffic, args.seed, args.windows * args.interval / 2),
                daemon=True,
            )
            thread.start()
            time.sleep(args.windows * args.interval)
            stop_traffic.set()
            thread.join()
            wait_for_report_after(
                collector_url, simulator.scrapes, simulator, 4 * args.interval + 10, viewer
            )
            processes.stop(agent)
            totals = collector_totals(collector_url, viewer)
            truth = {
                "mqtt_messages": Decimal(simulator.truth_since_first_scrape()),
                "devices": Decimal(simulator.active_devices),
            }
        status = wait_forwarded(collector_url, viewer)
        billed, preview = stripe_view(collector_url, CUSTOMER, viewer)
        asked = datetime.now(UTC)
        rows = [
            (
                name,
                str(totals.get(name, "-")),
                str(billed.get(name, "-")),
                str(value),
                totals.get(name) == value and billed.get(name) == value,
            )
            for name, value in truth.items()
        ]
        print()
        print_table(rows)
        print()
        print(
            f"Stripe calls: {status['batches'].get('sent', 0)} for "
            f"{status['forwards'].get('sent', 0) + status['forwards'].get('superseded', 0)} "
            f"report metrics ({status['calls_saved']} saved by coalescing and skipping)"
        )
        print(f"Invoice preview for {CUSTOMER}:")
        for line in preview["lines"]:
            print(
                f"  {line['description'] or line['lookup_key']:<50} ${line['amount'] / 100:>9.2f}"
            )
        print(f"  {'total':<50} ${preview['total'] / 100:>9.2f}")
        reconciled = reconciled_after(collector_url, viewer, asked, 6 * RECONCILE_INTERVAL)
        print()
        print(
            f"Drift table of the background reconciler (GET /api/reconciliation, every "
            f"{RECONCILE_INTERVAL}s; drift = Stripe - collector):"
        )
        print_drift_table(reconciled)
        agreed = all(ok for *_, ok in rows)
        in_sync = all_in_sync(reconciled)
        print()
        if agreed and in_sync:
            print(
                "demo: collector, Stripe and the ground truth agree; the reconciler finds no drift"
            )
        elif agreed:
            print(f"demo: MISMATCH: the reconciler finds metrics out of sync; logs in {workdir}")
        else:
            print(f"demo: MISMATCH; logs in {workdir}")
        print()
        announce(collector_url, console_key)
        if should_keep(args.keep):
            serve_until_interrupted(collector)
        return 0 if agreed and in_sync else 1
    finally:
        stop_traffic.set()
        processes.stop_all()


if __name__ == "__main__":
    sys.exit(main())
