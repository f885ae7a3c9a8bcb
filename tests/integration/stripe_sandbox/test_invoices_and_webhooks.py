"""Invoice previews from usage, billing cycles and signed webhooks verified by the SDK."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import stripe

from tests.integration.stripe_sandbox.catalog import setup_starter, subscribe
from tests.support.binaries import free_port
from tests.support.stripe_sandbox import Sandbox

SECRET = "whsec_sandbox_test"


class Receiver:
    """A loopback HTTP endpoint that keeps every webhook it is sent."""

    def __init__(self) -> None:
        received: list[tuple[bytes, str]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((body, self.headers["Stripe-Signature"]))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/webhook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(stripe_sandbox: Sandbox) -> Iterator[Receiver]:
    endpoint = Receiver()
    stripe_sandbox.control.configure_webhooks(endpoint.url, SECRET)
    yield endpoint
    endpoint.close()


def _events(receiver: Receiver) -> list[stripe.Event]:
    return [stripe.Webhook.construct_event(body, sig, SECRET) for body, sig in receiver.received]


def test_seed_example_eight_devices_on_starter_is_44_dollars(stripe_sandbox: Sandbox) -> None:
    client = stripe_sandbox.client
    starter = setup_starter(client)
    subscription = subscribe(client, starter)
    client.v1.billing.meter_events.create(
        {
            "event_name": "device_usage",
            "payload": {"stripe_customer_id": starter.customer.id, "value": "8"},
        }
    )

    preview = client.v1.invoices.create_preview(
        {"customer": starter.customer.id, "subscription": subscription.id}
    )

    assert preview.total == 4400
    assert preview.subtotal == 4400
    assert preview.amount_due == 4400
    assert sorted(line.amount for line in preview.lines.data) == [1500, 2900]


def test_transform_quantity_rounds_up_per_thousand_messages(stripe_sandbox: Sandbox) -> None:
    client = stripe_sandbox.client
    starter = setup_starter(client)
    subscription = subscribe(client, starter, "mqtt_messages", "storage_gb")
    for name, value in (("mqtt_messages", "1500"), ("mqtt_messages", "1"), ("storage_gb", "3")):
        client.v1.billing.meter_events.create(
            {
                "event_name": name,
                "payload": {"stripe_customer_id": starter.customer.id, "value": value},
            }
        )

    preview = client.v1.invoices.create_preview({"subscription": subscription.id})

    amounts = {line.pricing.price_details.price: line.amount for line in preview.lines.data}
    # 1501 messages bill as 2 thousands at $0.10
    assert amounts[starter.prices["mqtt_messages"].id] == 20
    assert amounts[starter.prices["storage_gb"].id] == 150


def test_webhooks_are_signed_and_follow_the_billing_cycle(
    stripe_sandbox: Sandbox, receiver: Receiver
) -> None:
    client = stripe_sandbox.client
    starter = setup_starter(client)
    subscription = subscribe(client, starter)
    client.v1.billing.meter_events.create(
        {
            "event_name": "device_usage",
            "payload": {"stripe_customer_id": starter.customer.id, "value": "8"},
        }
    )

    advanced = stripe_sandbox.control.advance_period(subscription.id)
    client.v1.subscriptions.cancel(subscription.id)
    deliveries = stripe_sandbox.control.flush_webhooks()

    events = _events(receiver)
    types = [e.type for e in events]
    assert {d["status"] for d in deliveries} == {"delivered"}
    assert types[0] == "customer.created"
    assert types.count("customer.subscription.created") == 1
    assert types[-1] == "customer.subscription.deleted"
    assert types.count("invoice.paid") == 2
    cycle = advanced["latest_invoice"]
    assert cycle["billing_reason"] == "subscription_cycle"
    assert cycle["total"] == 4400
    renewed = next(e for e in events if e.type == "customer.subscription.updated")
    item = renewed.data.object["items"]["data"][0]
    assert item["current_period_start"] == cycle["period_end"]


def test_failed_payments_emit_payment_failed(stripe_sandbox: Sandbox, receiver: Receiver) -> None:
    client = stripe_sandbox.client
    starter = setup_starter(client)
    stripe_sandbox.control.fail_payments(starter.customer.id)
    subscribe(client, starter)
    stripe_sandbox.control.flush_webhooks()

    assert "invoice.payment_failed" in [e.type for e in _events(receiver)]


def test_tampered_webhooks_fail_verification(stripe_sandbox: Sandbox, receiver: Receiver) -> None:
    client = stripe_sandbox.client
    client.v1.customers.create({"name": "acme"})
    stripe_sandbox.control.flush_webhooks()
    body, signature = receiver.received[0]

    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body + b" ", signature, SECRET)


def test_meter_error_report_is_a_thin_event(stripe_sandbox: Sandbox, receiver: Receiver) -> None:
    client = stripe_sandbox.client
    starter = setup_starter(client)
    meter_id = starter.meters["mqtt_messages"].id
    stripe_sandbox.control.error_report(
        meter_id, [{"identifier": "r1:mqtt", "code": "meter_event_customer_not_found"}]
    )
    stripe_sandbox.control.flush_webhooks()
    body, signature = receiver.received[-1]

    notification = client.parse_event_notification(body, signature, SECRET)
    event = notification.fetch_event()

    assert notification.type == "v1.billing.meter.error_report_triggered"
    assert notification.related_object.id == meter_id
    error_type = event.data.reason.error_types[0]
    assert error_type.code == "meter_event_customer_not_found"
    assert error_type.sample_errors[0].request.identifier == "r1:mqtt"
