"""The demo's Stripe side: the sandbox, the platform's subscription, and what Stripe would bill."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import httpx
import stripe

from collector.stripe_sandbox import DEFAULT_API_KEY

# `usage-collector stripe sandbox` answers only the key it was started with: its default here.
API_KEY = DEFAULT_API_KEY
WEBHOOK_SECRET = "whsec_demo"


def sandbox_client(url: str) -> stripe.StripeClient:
    return stripe.StripeClient(API_KEY, base_addresses={"api": url, "meter_events": url})


def subscribe(sandbox_url: str, customer_id: str) -> str:
    """What the platform does at sign-up: a Stripe customer subscribed to the metered prices."""
    client = sandbox_client(sandbox_url)
    keys = ["device_usage", "mqtt_messages", "storage_gb"]
    prices = client.v1.prices.list({"lookup_keys": keys, "limit": 10}).data
    customer = client.v1.customers.create(
        {"name": "Demo customer", "metadata": {"customer_id": customer_id}}
    )
    client.v1.subscriptions.create(
        {
            "customer": customer.id,
            "items": [{"price": p.id} for p in prices],
            "metadata": {"customer_id": customer_id},
        }
    )
    return str(customer.id)


def wait_until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def wait_for_link(collector_url: str, customer_id: str, operator: dict[str, str]) -> None:
    """The subscription webhook links the customer; reconcile answers once it has."""

    def linked() -> bool:
        url = f"{collector_url}/api/usage/{customer_id}/reconcile"
        return httpx.get(url, headers=operator, timeout=10).status_code == 200

    wait_until(linked, 30, "the subscription webhook to link the customer")


def wait_forwarded(collector_url: str, operator: dict[str, str]) -> dict[str, Any]:
    def drained() -> dict[str, Any] | None:
        status = httpx.get(f"{collector_url}/api/forwarding/status", headers=operator, timeout=10)
        body: dict[str, Any] = status.json()
        waiting = body["forwards"].get("pending", 0) + body["forwards"].get("batched", 0)
        return body if waiting == 0 and body["forwards"] else None

    result: dict[str, Any] = wait_until(drained, 60, "Stripe to acknowledge every forward")
    return result


def stripe_view(
    collector_url: str, customer_id: str, operator: dict[str, str]
) -> tuple[dict[str, Decimal], dict[str, Any]]:
    """Stripe's aggregate per metric (through reconcile) and the invoice preview."""
    base = f"{collector_url}/api/usage/{customer_id}"
    reconcile = httpx.get(f"{base}/reconcile", headers=operator, timeout=30).json()
    values = {
        m["metric"]: Decimal(str(m["stripe_value"]))
        for m in reconcile["metrics"]
        if m["stripe_value"] is not None
    }
    preview = httpx.get(f"{base}/invoice-preview", headers=operator, timeout=30).json()
    return values, preview
