"""Meter events through the SDK: validation, identifier dedupe, summaries per formula, v2 stream."""

from __future__ import annotations

from datetime import timedelta

import pytest
import stripe

from tests.integration.stripe_sandbox.catalog import Starter, setup_starter
from tests.support.stripe_sandbox import Sandbox


def _send(client: stripe.StripeClient, starter: Starter, name: str, value: str, **extra: object):
    return client.v1.billing.meter_events.create(
        {
            "event_name": name,
            "payload": {"stripe_customer_id": starter.customer.id, "value": value},
            **extra,
        }
    )


def _total(sandbox: Sandbox, starter: Starter, name: str, start: int, end: int) -> int:
    summaries = sandbox.client.v1.billing.meters.event_summaries.list(
        starter.meters[name].id,
        {"customer": starter.customer.id, "start_time": start, "end_time": end},
    )
    return int(summaries.data[0].aggregated_value)


def _hour(sandbox: Sandbox) -> int:
    now = int(sandbox.clock.now().timestamp())
    return now - now % 3600


def test_summaries_aggregate_by_each_formula(stripe_sandbox: Sandbox) -> None:
    client = stripe_sandbox.client
    starter = setup_starter(client)
    count_meter = client.v1.billing.meters.create(
        {
            "display_name": "calls",
            "event_name": "api_calls",
            "default_aggregation": {"formula": "count"},
        }
    )
    start = _hour(stripe_sandbox) - 3600
    for offset, value in ((0, "3"), (600, "9"), (300, "4")):
        ts = start + offset
        _send(client, starter, "mqtt_messages", value, timestamp=ts)
        _send(client, starter, "device_usage", value, timestamp=ts)
        _send(client, starter, "api_calls", value, timestamp=ts)
    counted = client.v1.billing.meters.event_summaries.list(
        count_meter.id,
        {"customer": starter.customer.id, "start_time": start, "end_time": start + 3600},
    )

    assert _total(stripe_sandbox, starter, "mqtt_messages", start, start + 3600) == 16
    assert _total(stripe_sandbox, starter, "device_usage", start, start + 3600) == 9
    assert counted.data[0].aggregated_value == 3


def test_summaries_group_by_hour(stripe_sandbox: Sandbox) -> None:
    client = stripe_sandbox.client
    starter = setup_starter(client)
    start = _hour(stripe_sandbox) - 2 * 3600
    for offset, value in ((0, "1"), (10, "2"), (3600, "5")):
        _send(client, starter, "mqtt_messages", value, timestamp=start + offset)

    hourly = client.v1.billing.meters.event_summaries.list(
        starter.meters["mqtt_messages"].id,
        {
            "customer": starter.customer.id,
            "start_time": start,
            "end_time": start + 3 * 3600,
            "value_grouping_window": "hour",
        },
    )

    assert sorted((s.start_time - start, s.aggregated_value) for s in hourly.data) == [
        (0, 3),
        (3600, 5),
    ]


def test_duplicate_identifier_is_a_final_400(stripe_sandbox: Sandbox) -> None:
    client = stripe_sandbox.client
    starter = setup_starter(client)
    _send(client, starter, "mqtt_messages", "5", identifier="report-1:mqtt")

    with pytest.raises(stripe.InvalidRequestError) as duplicate:
        _send(client, starter, "mqtt_messages", "5", identifier="report-1:mqtt")

    error = duplicate.value
    assert error.http_status == 400
    assert error.code == "resource_already_exists"
    assert error.param == "identifier"
    assert error.headers["stripe-should-retry"] == "false"
    assert "report-1:mqtt" in str(error.user_message)
    assert len(stripe_sandbox.control.meter_events()) == 1


def test_identifier_is_remembered_for_a_day(stripe_sandbox: Sandbox) -> None:
    client = stripe_sandbox.client
    starter = setup_starter(client)
    _send(client, starter, "mqtt_messages", "5", identifier="once")
    stripe_sandbox.control.advance_clock(23 * 3600)

    with pytest.raises(stripe.InvalidRequestError):
        _send(client, starter, "mqtt_messages", "5", identifier="once")


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("2.5", "meter_event_invalid_value"),
        ("abc", "meter_event_invalid_value"),
        ("1234567890123456", "meter_event_value_too_many_digits"),
    ],
)
def test_values_must_be_whole_with_at_most_15_digits(
    stripe_sandbox: Sandbox, value: str, code: str
) -> None:
    client = stripe_sandbox.client
    starter = setup_starter(client)

    with pytest.raises(stripe.InvalidRequestError) as rejected:
        _send(client, starter, "mqtt_messages", value)

    assert rejected.value.code == code
    assert rejected.value.headers["stripe-should-retry"] == "false"


def test_fifteen_digit_values_are_accepted(stripe_sandbox: Sandbox) -> None:
    starter = setup_starter(stripe_sandbox.client)

    _send(stripe_sandbox.client, starter, "mqtt_messages", "999999999999999")

    assert stripe_sandbox.control.meter_events()[0]["value"] == 999_999_999_999_999


@pytest.mark.parametrize(
    ("shift", "code"),
    [
        (timedelta(days=-35, seconds=-1), "timestamp_too_far_in_past"),
        (timedelta(minutes=5, seconds=1), "timestamp_in_future"),
    ],
)
def test_timestamps_outside_the_window_are_refused(
    stripe_sandbox: Sandbox, shift: timedelta, code: str
) -> None:
    starter = setup_starter(stripe_sandbox.client)
    timestamp = int((stripe_sandbox.clock.now() + shift).timestamp())

    with pytest.raises(stripe.InvalidRequestError) as rejected:
        _send(stripe_sandbox.client, starter, "mqtt_messages", "1", timestamp=timestamp)

    assert rejected.value.code == code


def test_timestamps_at_the_window_edges_are_accepted(stripe_sandbox: Sandbox) -> None:
    starter = setup_starter(stripe_sandbox.client)
    now = stripe_sandbox.clock.now()
    for shift in (timedelta(days=-35), timedelta(minutes=5)):
        timestamp = int((now + shift).timestamp())
        _send(stripe_sandbox.client, starter, "mqtt_messages", "1", timestamp=timestamp)

    assert len(stripe_sandbox.control.meter_events()) == 2


def test_unknown_event_name_and_customer_are_refused(stripe_sandbox: Sandbox) -> None:
    client = stripe_sandbox.client
    starter = setup_starter(client)

    with pytest.raises(stripe.InvalidRequestError) as no_meter:
        _send(client, starter, "nope", "1")
    with pytest.raises(stripe.InvalidRequestError) as no_customer:
        client.v1.billing.meter_events.create(
            {
                "event_name": "mqtt_messages",
                "payload": {"stripe_customer_id": "cus_x", "value": "1"},
            }
        )

    assert no_meter.value.code == "no_meter"
    assert no_customer.value.code == "meter_event_customer_not_found"


def test_deactivated_meter_refuses_events(stripe_sandbox: Sandbox) -> None:
    client = stripe_sandbox.client
    starter = setup_starter(client)
    client.v1.billing.meters.deactivate(starter.meters["storage_gb"].id)

    with pytest.raises(stripe.InvalidRequestError) as archived:
        _send(client, starter, "storage_gb", "1")

    assert archived.value.code == "archived_meter"


def test_v2_stream_accepts_batches_with_a_session_token(stripe_sandbox: Sandbox) -> None:
    client = stripe_sandbox.client
    starter = setup_starter(client)
    session = client.v2.billing.meter_event_session.create()
    events = [
        {
            "event_name": "mqtt_messages",
            "identifier": f"batch-{i}",
            "payload": {"stripe_customer_id": starter.customer.id, "value": "10"},
            "timestamp": stripe_sandbox.clock.now().isoformat(),
        }
        for i in range(100)
    ]

    client.v2.billing.meter_event_stream.create(
        {"events": events}, {"api_key": session.authentication_token}
    )
    # a replayed batch is deduplicated by identifier, silently, as the stream does
    client.v2.billing.meter_event_stream.create(
        {"events": events}, {"api_key": session.authentication_token}
    )

    start = _hour(stripe_sandbox)
    assert _total(stripe_sandbox, starter, "mqtt_messages", start, start + 3600) == 1000
    assert session.expires_at > session.created


def test_v2_stream_refuses_more_than_100_events(stripe_sandbox: Sandbox) -> None:
    client = stripe_sandbox.client
    starter = setup_starter(client)
    session = client.v2.billing.meter_event_session.create()
    event = {
        "event_name": "mqtt_messages",
        "payload": {"stripe_customer_id": starter.customer.id, "value": "1"},
    }

    with pytest.raises(stripe.InvalidRequestError):
        client.v2.billing.meter_event_stream.create(
            {"events": [event] * 101}, {"api_key": session.authentication_token}
        )


def test_v2_session_expires_after_15_minutes(stripe_sandbox: Sandbox) -> None:
    client = stripe_sandbox.client
    starter = setup_starter(client)
    session = client.v2.billing.meter_event_session.create()
    stripe_sandbox.control.advance_clock(15 * 60)
    event = {
        "event_name": "mqtt_messages",
        "payload": {"stripe_customer_id": starter.customer.id, "value": "1"},
    }

    with pytest.raises(stripe.TemporarySessionExpiredError):
        client.v2.billing.meter_event_stream.create(
            {"events": [event]}, {"api_key": session.authentication_token}
        )


def test_v2_stream_reports_invalid_events_asynchronously(stripe_sandbox: Sandbox) -> None:
    client = stripe_sandbox.client
    starter = setup_starter(client)
    session = client.v2.billing.meter_event_session.create()
    bad = {
        "event_name": "mqtt_messages",
        "identifier": "bad-1",
        "payload": {"stripe_customer_id": starter.customer.id, "value": "1.5"},
    }

    client.v2.billing.meter_event_stream.create(
        {"events": [bad]}, {"api_key": session.authentication_token}
    )

    rejections = stripe_sandbox.control.stream_rejections()
    assert [(r["identifier"], r["code"]) for r in rejections] == [
        ("bad-1", "meter_event_invalid_value")
    ]
    assert stripe_sandbox.control.meter_events() == []
