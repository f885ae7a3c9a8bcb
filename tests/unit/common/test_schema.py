from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from common.schema import LegacyUsageReport, UsageReport, derive_report_id, is_legacy_body

START = datetime(2026, 3, 1, 10, tzinfo=UTC)
END = START + timedelta(hours=1)


def report(**changes: object) -> UsageReport:
    fields: dict[str, object] = {
        "customer_id": "cust_1",
        "instance_id": "i-1",
        "window_start": START,
        "window_end": END,
        "metrics": {"devices": 3, "mqtt_messages": 15000, "storage_gb": 2.5},
    }
    fields.update(changes)
    return UsageReport.model_validate(fields)


def test_report_id_is_deterministic_per_window() -> None:
    assert report().id == report().id
    assert report().id == derive_report_id("cust_1", "i-1", START, END)
    assert report(window_end=END + timedelta(hours=1)).id != report().id
    assert report(instance_id="i-2").id != report().id


def test_report_ids_keep_the_values_agents_and_stored_reports_derived() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert str(derive_report_id("cust_ü1", "i-1", START, END)) == (
        "2de5d106-76e9-579f-8288-42c269d81b1c"
    )
    assert str(
        derive_report_id(
            "c", "i", START.astimezone(plus_two), START + timedelta(minutes=1, microseconds=5)
        )
    ) == ("0b54b0a6-97a4-5e57-b321-9c8ead1a1af0")


def test_report_id_does_not_depend_on_the_timezone_the_window_is_written_in() -> None:
    plus_two = timezone(timedelta(hours=2))
    shifted = report(window_start=START.astimezone(plus_two), window_end=END.astimezone(plus_two))
    assert shifted.id == report().id
    assert shifted.window_start.tzinfo == UTC


@given(
    metrics=st.dictionaries(
        st.sampled_from(["devices", "mqtt_messages", "storage_gb", "api_requests"]),
        st.one_of(
            st.integers(0, 10**12),
            st.floats(0, 1e12, allow_nan=False).map(lambda f: float(f"{f:.6g}")),
        ),
    ),
    hours=st.integers(1, 24 * 40),
)
def test_round_trip_through_json_is_lossless(metrics: dict[str, float], hours: int) -> None:
    original = report(
        metrics=metrics,
        window_end=START + timedelta(hours=hours),
        partial=True,
        missing=["prometheus"],
        agent_version="1.2.3",
        active_devices=2,
    )
    decoded = UsageReport.model_validate_json(original.to_json())
    assert decoded == original
    assert decoded.fingerprint() == original.fingerprint()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (-1, "negative"),
        (math.nan, "finite"),
        (math.inf, "finite"),
        (1e12 + 1, "1e12"),
        (1.2345678901234567, "15 significant"),
    ],
)
def test_bad_metric_values_are_rejected_with_a_reason(value: float, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        report(metrics={"devices": value})


def test_window_end_must_follow_window_start() -> None:
    with pytest.raises(ValidationError, match="must be after"):
        report(window_start=END, window_end=START)


@pytest.mark.parametrize(
    "identifier", ["", " ", "a" * 129, "bad\nid", "nul\x00", "\ud800cust", "cust\udfff"]
)
def test_bad_identifiers_are_rejected(identifier: str) -> None:
    with pytest.raises(ValidationError):
        report(customer_id=identifier)
    with pytest.raises(ValidationError):
        LegacyUsageReport(customer_id=identifier, instance_id="i-1")


def test_missing_sources_mark_the_report_partial() -> None:
    assert report(missing=["prometheus"]).partial is True


def test_legacy_body_is_recognised() -> None:
    body = {
        "customer_id": "c",
        "instance_id": "i",
        "active_devices": 3,
        "total_devices": 5,
        "metrics": {"devices": 3},
    }
    assert is_legacy_body(body)
    assert LegacyUsageReport.model_validate(body).metrics == {"devices": 3}
    assert not is_legacy_body(report().model_dump(mode="json"))


def test_fingerprint_tells_content_changes_apart() -> None:
    assert report().fingerprint() != report(metrics={"devices": 4}).fingerprint()
    assert report().fingerprint() == report(agent_version="other").fingerprint()


def test_fingerprints_keep_the_bytes_stored_reports_were_digested_with() -> None:
    """A stored report's fingerprint is compared with its retry's: the digest never changes."""
    stored = report(
        customer_id='cust_ü"1',
        metrics={"storage_gb": 2.5, "devices": 3, "mqtt_messages": 15000, "tiny": 1e-05},
        active_devices=2,
    )
    assert stored.fingerprint() == (
        "549375af5a00e9574e0ac7d711f3bef3a1101c3559cd493233799ea57a87c804"
    )
    assert stored.fingerprint(include_window=False) == (
        "0db4a80327fcb08098f1a97729d8126b7e7d9962816da030f2db375d58ae8be6"
    )


identifiers = st.text(
    st.characters(exclude_categories=["Cs", "Cc"]), min_size=1, max_size=20
).filter(str.strip)


@given(
    customer=identifiers,
    instance=identifiers,
    metrics=st.dictionaries(
        st.sampled_from(["devices", "mqtt_messages", "storage_gb", "api_requests"]),
        st.one_of(
            st.integers(0, 10**12),
            st.floats(0, 1e12, allow_nan=False).map(lambda f: float(f"{f:.15g}")),
        ),
    ),
    devices=st.none() | st.integers(0, 10**9),
    start=st.datetimes(datetime(2001, 1, 1), datetime(2098, 1, 1), timezones=st.just(UTC)),
    include_window=st.booleans(),
)
def test_the_fingerprint_digests_the_canonical_json_of_the_content(
    customer: str,
    instance: str,
    metrics: dict[str, float],
    devices: int | None,
    start: datetime,
    include_window: bool,
) -> None:
    content = report(
        customer_id=customer,
        instance_id=instance,
        metrics=metrics,
        active_devices=devices,
        total_devices=devices,
        window_start=start,
        window_end=start + timedelta(minutes=1),
    )
    canonical = json.dumps(
        content.canonical_content(include_window=include_window),
        sort_keys=True,
        separators=(",", ":"),
    )
    expected = hashlib.sha256(canonical.encode()).hexdigest()
    assert content.fingerprint(include_window=include_window) == expected
