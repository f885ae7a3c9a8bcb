"""The call log's identifiers and in-flight overlaps, as tests of replicas read them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from collector.stripe_sandbox.in_flight import carried_identifiers, overlaps


@dataclass
class Call:
    monotonic: float
    finished: float | None
    identifiers: list[str] = field(default_factory=list)


FORM = {"content-type": "application/x-www-form-urlencoded"}


def test_a_v1_meter_event_carries_its_identifier_and_idempotency_key_once() -> None:
    body = b"event_name=mqtt_messages&identifier=id-1&payload[value]=5"

    assert carried_identifiers(FORM | {"idempotency-key": "id-1"}, body) == ["id-1"]
    assert carried_identifiers(FORM | {"idempotency-key": "key-9"}, body) == ["key-9", "id-1"]


def test_a_stream_request_carries_every_event_identifier() -> None:
    body = json.dumps(
        {"events": [{"identifier": "a", "event_name": "x"}, {"identifier": "b", "event_name": "x"}]}
    ).encode()

    assert carried_identifiers({"content-type": "application/json"}, body) == ["a", "b"]


def test_a_request_without_identifiers_or_with_a_bad_body_carries_none() -> None:
    assert carried_identifiers(FORM, b"") == []
    assert carried_identifiers({"content-type": "application/json"}, b"{not json") == []


def test_overlaps_are_calls_with_one_identifier_in_flight_at_once() -> None:
    calls = [
        Call(0.0, 1.0, ["a"]),
        Call(1.0, 2.0, ["a"]),  # starts as the first ends: not at once
        Call(1.5, 1.7, ["a", "b"]),  # inside the second
        Call(1.6, None, ["b"]),  # still running
        Call(5.0, 6.0, ["c"]),
    ]

    assert sorted(overlaps(calls, now=10.0)) == [("a", 1, 2), ("b", 2, 3)]
