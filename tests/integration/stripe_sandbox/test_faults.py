"""Injected faults as the SDK sees them, rate limits, locks and idempotent replays."""

from __future__ import annotations

import threading

import pytest
import stripe

from tests.integration.stripe_sandbox.catalog import setup_starter
from tests.support.stripe_sandbox import Sandbox


def _event(sandbox: Sandbox, customer: str, identifier: str, **options: object) -> object:
    return sandbox.client.v1.billing.meter_events.create(
        {
            "event_name": "mqtt_messages",
            "identifier": identifier,
            "payload": {"stripe_customer_id": customer, "value": "1"},
        },
        options or None,  # type: ignore[arg-type]
    )


def test_error_rates_surface_as_sdk_errors(stripe_sandbox: Sandbox) -> None:
    starter = setup_starter(stripe_sandbox.client)
    stripe_sandbox.control.faults(seed=7, error_500_rate=0.2, error_429_rate=0.1)
    outcomes: dict[str, int] = {"ok": 0, "rate_limit": 0, "api_error": 0}
    statuses: set[int | None] = set()

    for index in range(200):
        try:
            _event(stripe_sandbox, starter.customer.id, f"e{index}")
            outcomes["ok"] += 1
        except stripe.RateLimitError as exc:
            statuses.add(exc.http_status)
            outcomes["rate_limit"] += 1
        except stripe.APIError as exc:
            statuses.add(exc.http_status)
            outcomes["api_error"] += 1

    assert all(outcomes.values())
    assert statuses == {429, 500}
    assert outcomes["ok"] == len(stripe_sandbox.control.meter_events())
    faults = [
        c["fault"] for c in stripe_sandbox.control.calls() if c["path"].endswith("meter_events")
    ]
    assert faults.count("500") == outcomes["api_error"]
    assert faults.count("429") == outcomes["rate_limit"]


def test_dropped_connections_are_connection_errors(stripe_sandbox: Sandbox) -> None:
    starter = setup_starter(stripe_sandbox.client)
    stripe_sandbox.control.faults(drop_rate=1.0)

    with pytest.raises(stripe.APIConnectionError):
        _event(stripe_sandbox, starter.customer.id, "lost")

    assert stripe_sandbox.control.meter_events() == []


def test_a_drop_after_processing_is_healed_by_an_idempotent_retry(stripe_sandbox: Sandbox) -> None:
    starter = setup_starter(stripe_sandbox.client)
    stripe_sandbox.control.faults(drop_after_rate=1.0)

    with pytest.raises(stripe.APIConnectionError):
        _event(stripe_sandbox, starter.customer.id, "r1", idempotency_key="k1")
    stripe_sandbox.control.clear_faults()
    replayed = _event(stripe_sandbox, starter.customer.id, "r1", idempotency_key="k1")

    assert replayed.identifier == "r1"  # type: ignore[attr-defined]
    assert len(stripe_sandbox.control.meter_events()) == 1


def test_sdk_retries_recover_from_transient_faults(stripe_sandbox: Sandbox) -> None:
    starter = setup_starter(stripe_sandbox.client)
    stripe_sandbox.control.faults(seed=3, error_500_rate=0.3, drop_after_rate=0.2)
    client = stripe_sandbox.new_client(max_network_retries=10)
    stripe.HTTPClient.INITIAL_DELAY = 0.001  # keep the SDK's own backoff short in tests

    try:
        for index in range(30):
            client.v1.billing.meter_events.create(
                {
                    "event_name": "mqtt_messages",
                    "identifier": f"retry-{index}",
                    "payload": {"stripe_customer_id": starter.customer.id, "value": "1"},
                }
            )
    finally:
        stripe.HTTPClient.INITIAL_DELAY = 0.5

    assert len(stripe_sandbox.control.meter_events()) == 30


def test_reused_idempotency_key_with_other_params_is_refused(stripe_sandbox: Sandbox) -> None:
    client = stripe_sandbox.client
    client.v1.customers.create({"name": "a"}, {"idempotency_key": "same"})

    with pytest.raises(stripe.IdempotencyError):
        client.v1.customers.create({"name": "b"}, {"idempotency_key": "same"})


def test_rate_limit_answers_429_beyond_the_configured_rate(stripe_sandbox: Sandbox) -> None:
    stripe_sandbox.control.faults(rate_limit_per_second=5)
    limited: list[stripe.RateLimitError] = []

    for _ in range(12):
        try:
            stripe_sandbox.client.v1.customers.list()
        except stripe.RateLimitError as exc:
            limited.append(exc)

    admitted = [c for c in stripe_sandbox.control.calls() if c["status"] == 200]
    assert limited
    assert {exc.error.code for exc in limited if exc.error} == {"rate_limit"}
    for call in admitted:
        window = [c for c in admitted if 0 <= c["monotonic"] - call["monotonic"] < 1.0]
        assert len(window) <= 5


def test_concurrent_calls_for_one_customer_and_meter_hit_lock_timeout(
    stripe_sandbox: Sandbox,
) -> None:
    starter = setup_starter(stripe_sandbox.client)
    stripe_sandbox.control.faults(lock_per_customer_meter=True, latency_seconds=0.5)
    errors: list[Exception] = []
    started = threading.Barrier(2)

    def send(identifier: str) -> None:
        client = stripe_sandbox.new_client()
        started.wait()
        try:
            client.v1.billing.meter_events.create(
                {
                    "event_name": "mqtt_messages",
                    "identifier": identifier,
                    "payload": {"stripe_customer_id": starter.customer.id, "value": "1"},
                }
            )
        except stripe.RateLimitError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(f"c{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(errors) == 1
    error = errors[0]
    assert isinstance(error, stripe.RateLimitError)
    assert error.error is not None
    assert error.error.code == "lock_timeout"
    assert error.headers["stripe-should-retry"] == "true"
