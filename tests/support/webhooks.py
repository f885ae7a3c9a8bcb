"""Signed Stripe webhook bodies for tests that post them to a collector."""

from __future__ import annotations

import json
import time
from typing import Any

import stripe


def signed(payload: dict[str, Any], secret: str, at: int | None = None) -> tuple[bytes, str]:
    """The body and ``Stripe-Signature`` header Stripe would send for ``payload``."""
    body = json.dumps(payload).encode()
    stamp = at or int(time.time())
    signature = stripe.WebhookSignature._compute_signature(f"{stamp}.{body.decode()}", secret)
    return body, f"t={stamp},v1={signature}"


def subscription_event(
    event_id: str,
    customer_id: str,
    stripe_customer: str,
    *,
    subscription_id: str = "sub_webhook",
    start: int | None = None,
) -> dict[str, Any]:
    """``customer.subscription.created`` for a 30-day period starting at ``start`` (now)."""
    begin = start if start is not None else int(time.time())
    return {
        "id": event_id,
        "object": "event",
        "type": "customer.subscription.created",
        "created": begin,
        "data": {
            "object": {
                "id": subscription_id,
                "object": "subscription",
                "customer": stripe_customer,
                "status": "active",
                "created": begin,
                "metadata": {"customer_id": customer_id},
                "items": {
                    "data": [
                        {
                            "id": "si_devices",
                            "price": {"id": "price_d", "lookup_key": "device_usage"},
                            "current_period_start": begin,
                            "current_period_end": begin + 30 * 86400,
                        }
                    ]
                },
            }
        },
    }
