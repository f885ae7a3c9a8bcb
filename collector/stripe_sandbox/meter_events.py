"""Validating and recording meter events, shared by the v1 endpoint and the v2 stream."""

from __future__ import annotations

import re
from typing import Any

from collector.stripe_sandbox import errors
from collector.stripe_sandbox.aggregation import MeterEventRecord
from collector.stripe_sandbox.errors import StripeAPIError
from collector.stripe_sandbox.state import Store

PAST_LIMIT_SECONDS = 35 * 86400
FUTURE_LIMIT_SECONDS = 5 * 60
MAX_SIGNIFICANT_DIGITS = 15
MAX_IDENTIFIER_LENGTH = 100
_WHOLE = re.compile(r"^[+-]?\d+$")


def meter_for(store: Store, event_name: str) -> dict[str, Any]:
    """The meter receiving ``event_name``: active meters win over deactivated ones."""
    matching = [m for m in store.meters.values() if m["event_name"] == event_name]
    for meter in matching:
        if meter["status"] == "active":
            return meter
    if matching:
        raise errors.invalid(
            f"The meter for event_name `{event_name}` is inactive.",
            code="archived_meter",
            param="event_name",
        )
    raise errors.invalid(
        f"No active meter was found for event_name `{event_name}`.",
        code="no_meter",
        param="event_name",
    )


def parse_value(raw: Any, param: str) -> int:
    """A whole number with at most 15 significant digits; anything else is rejected."""
    text = str(raw).strip()
    if not _WHOLE.match(text):
        raise errors.invalid(
            f"Meter event value must be a whole number, got `{raw}`.",
            code="meter_event_invalid_value",
            param=param,
        )
    digits = text.lstrip("+-").lstrip("0")
    if len(digits) > MAX_SIGNIFICANT_DIGITS:
        raise errors.invalid(
            f"Meter event value `{raw}` has more than {MAX_SIGNIFICANT_DIGITS} digits.",
            code="meter_event_value_too_many_digits",
            param=param,
        )
    return int(text)


def check_timestamp(store: Store, timestamp: int) -> None:
    now = store.now()
    if timestamp < now - PAST_LIMIT_SECONDS:
        raise errors.invalid(
            "Timestamp must be within the past 35 calendar days.",
            code="timestamp_too_far_in_past",
            param="timestamp",
        )
    if timestamp > now + FUTURE_LIMIT_SECONDS:
        raise errors.invalid(
            "Timestamp must be no more than 5 minutes in the future.",
            code="timestamp_in_future",
            param="timestamp",
        )


def is_duplicate(store: Store, identifier: str) -> bool:
    seen = store.identifiers.get(identifier)
    return seen is not None and store.now() - seen < store.identifier_ttl_seconds


def duplicate_error(identifier: str) -> StripeAPIError:
    # Stripe answers a reused identifier with this message and `Stripe-Should-Retry: false`.
    return errors.invalid(
        f"An event already exists with identifier {identifier}.",
        code="resource_already_exists",
        param="identifier",
    )


def validate(
    store: Store,
    *,
    event_name: str,
    payload: dict[str, Any],
    identifier: str,
    timestamp: int,
    source: str,
) -> MeterEventRecord:
    """Check one event against its meter and Stripe's limits; raise with Stripe's code."""
    meter = meter_for(store, event_name)
    customer_key = meter["customer_mapping"]["event_payload_key"]
    value_key = meter["value_settings"]["event_payload_key"]
    customer_id = payload.get(customer_key)
    if not customer_id:
        raise errors.invalid(
            f"The payload is missing the customer key `{customer_key}`.",
            code="meter_event_no_customer_defined",
            param=f"payload[{customer_key}]",
        )
    if customer_id not in store.customers:
        raise errors.invalid(
            f"No such customer: '{customer_id}'",
            code="meter_event_customer_not_found",
            param=f"payload[{customer_key}]",
        )
    formula = meter["default_aggregation"]["formula"]
    raw_value = payload.get(value_key)
    if raw_value is None:
        if formula != "count":
            raise errors.invalid(
                f"The payload is missing the value key `{value_key}`.",
                code="meter_event_invalid_value",
                param=f"payload[{value_key}]",
            )
        raw_value = "1"
    value = parse_value(raw_value, f"payload[{value_key}]")
    check_timestamp(store, timestamp)
    if len(identifier) > MAX_IDENTIFIER_LENGTH:
        raise errors.invalid("identifier must be at most 100 characters.", param="identifier")
    return MeterEventRecord(
        seq=0,
        identifier=identifier,
        event_name=event_name,
        meter_id=meter["id"],
        customer=str(customer_id),
        value=value,
        timestamp=timestamp,
        received_at=store.now(),
        source=source,
    )


def record(store: Store, event: MeterEventRecord) -> MeterEventRecord:
    stored = MeterEventRecord(**{**event.__dict__, "seq": store.next_seq()})
    store.add_meter_event(stored)
    return stored
