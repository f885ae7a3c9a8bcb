from __future__ import annotations

import time

import pytest
import stripe

from collector.stripe_sandbox.webhooks import sign


def test_signature_verifies_with_the_sdk() -> None:
    payload = b'{"id": "evt_1", "object": "event"}'
    header = sign(payload, "whsec_x", int(time.time()))

    assert stripe.WebhookSignature.verify_header(payload.decode(), header, "whsec_x")


def test_signature_with_another_secret_is_rejected() -> None:
    payload = b"{}"
    header = sign(payload, "whsec_x", int(time.time()))

    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(payload.decode(), header, "whsec_other")
