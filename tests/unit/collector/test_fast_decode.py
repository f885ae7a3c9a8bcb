"""The msgspec fast path and the pydantic schema agree on every body (issue 14).

Generated bodies, valid and invalid: wrong types, missing and extra fields, bounds, NaN and
infinities, huge numbers, times in other formats and zones, unknown metrics, bad ids and the
legacy shape. Whatever the fast path accepts, the schema accepts as an equal report; whatever
the schema refuses, the fast path leaves to it; and the ingest service's answer, a report or an
error with its status, code, field and detail, is the one the schema path alone gives.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from collector.adapters.db.engine import create_engine
from collector.adapters.db.reports import ReportStore
from collector.errors import CollectorError
from collector.services.ingest import IngestService
from collector.services.report_decoding import decode_report
from collector.telemetry import CollectorMetrics
from common.catalogue import MetricCatalogue
from common.clock import ManualClock
from common.schema import UsageReport, derive_report_id, is_legacy_body

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
START = NOW - timedelta(hours=2)
END = NOW - timedelta(hours=1)
METRICS = ["devices", "mqtt_messages", "storage_gb", "api_requests"]


def base() -> dict[str, Any]:
    """A canonical body, as an agent sends it."""
    return {
        "schema_version": 1,
        "customer_id": "cust_1",
        "instance_id": "cluster-a",
        "window_start": START.isoformat(),
        "window_end": END.isoformat(),
        "metrics": {"devices": 7, "mqtt_messages": 1234, "storage_gb": 1.5},
        "active_devices": 7,
        "total_devices": 9,
        "partial": False,
        "missing": [],
        "unmeasured": [],
        "coverage": {},
        "agent_version": "1.4.0",
    }


identifiers = st.one_of(
    st.sampled_from(["cust_1", "a", "x" * 128, "x" * 129, "", "   ", "cust 1", "ü-tenant"]),
    st.sampled_from(["a\nb", "a\x00b", "a\x7fb", "a\x9fb", "\u2028", "tab\t", "ok/with:chars"]),
    st.text(max_size=12),
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1),
    st.integers(),
    st.none(),
)


def time_text(moment: datetime) -> st.SearchStrategy[Any]:
    """``moment`` written in the formats agents use and in many they do not."""
    utc = moment.astimezone(UTC)
    naive = utc.replace(tzinfo=None)
    return st.one_of(
        st.sampled_from(
            [
                utc.isoformat(),
                utc.isoformat().replace("+00:00", "Z"),
                utc.isoformat().replace("+00:00", "z"),
                utc.isoformat().replace("T", "t"),
                utc.isoformat().replace("T", " "),
                naive.isoformat(),
                utc.isoformat(timespec="milliseconds"),
                utc.isoformat(timespec="microseconds"),
                utc.isoformat().replace("+00:00", ".5+00:00"),
                utc.isoformat().replace("+00:00", ".1234567+00:00"),
                utc.isoformat().replace("+00:00", "-00:00"),
                utc.isoformat().replace("+00:00", "+0000"),
                utc.isoformat().replace("+00:00", "+00"),
                utc.isoformat().replace("+00:00", "+00:00:30"),
                utc.date().isoformat(),
                utc.strftime("%Y-%m-%dT%H:%M"),
                "2026-02-30T10:00:00+00:00",
                "2026-03-10T24:00:00+00:00",
                "2026-03-10T23:59:60+00:00",
                "1999-12-31T23:59:59+00:00",
                "2100-01-01T00:00:00+00:00",
                "9999-12-31T23:59:59-23:59",
                "0001-01-01T00:00:00+00:00",
                "2026-03-10T10:00:00+99:00",
                "٢٠٢٦-03-10T10:00:00+00:00",
                "",
            ]
        ),
        st.integers(-23, 23).flatmap(
            lambda hours: st.sampled_from([0, 30, 45]).map(
                lambda minutes: utc.astimezone(
                    _zone(hours, minutes if hours >= 0 else -minutes)
                ).isoformat()
            )
        ),
        st.just(utc.timestamp()),
        st.just(int(utc.timestamp())),
        st.just(str(int(utc.timestamp()))),
        st.none(),
    )


def _zone(hours: int, minutes: int) -> Any:
    from datetime import timezone

    return timezone(timedelta(hours=hours, minutes=minutes))


numbers = st.one_of(
    st.integers(0, 10**12),
    st.integers(-(10**40), 10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(0, 1e12).map(lambda f: float(f"{f:.6g}")),
    st.sampled_from([0, -0.0, 1.0, 1e12, 1e12 + 1, 0.1, 1.5, 2.5e-7, 1.234567890123456, 10**15]),
)
metric_values = st.one_of(
    numbers, st.booleans(), st.none(), st.text(max_size=3), st.sampled_from(["7", "1e3"])
)
metric_names = st.one_of(st.sampled_from([*METRICS, "bogus", ""]), st.text(max_size=6))
devices = st.one_of(
    st.integers(0, 10**9),
    st.integers(-5, 10**20),
    st.sampled_from([5.0, 5.5, "5", True, None, 10**9 + 1]),
)
flags = st.one_of(st.booleans(), st.sampled_from([0, 1, "true", "false", "yes", None, 1.0]))
names = st.lists(st.one_of(st.sampled_from(METRICS), st.text(max_size=4), st.integers()))
coverage_entries = st.fixed_dictionaries(
    {"samples": st.one_of(st.integers(0, 10), st.integers(-1, 10**13), st.just(1.0))},
    optional={
        "expected": st.one_of(st.integers(0, 10), st.just("3")),
        "series": st.one_of(st.integers(0, 3), st.integers(-1, 10**13)),
        "method": st.sampled_from(["raw", "grid", "scrape", "api", "bogus", 1]),
        "extra": st.integers(),
    },
)
report_ids = st.one_of(
    st.just("derived"),
    st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()),
    st.uuids().map(lambda u: u.hex),
    st.uuids().map(lambda u: "{" + str(u) + "}"),
    st.uuids().map(lambda u: u.urn),
    st.sampled_from(["", "not-a-uuid", 5, None]),
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """A body: the canonical one with some fields changed, dropped or added, then encoded."""
    body = base()
    changes: dict[str, st.SearchStrategy[Any]] = {
        "schema_version": st.sampled_from([1, 2, 0, "1", 1.0, True, None]),
        "customer_id": identifiers,
        "instance_id": identifiers,
        "window_start": time_text(START),
        "window_end": st.one_of(time_text(END), time_text(START), time_text(NOW + timedelta(1))),
        "metrics": st.dictionaries(metric_names, metric_values, max_size=5)
        | st.dictionaries(st.text(max_size=3), st.integers(0, 9), min_size=60, max_size=70)
        | st.sampled_from([[], "x", None]),
        "active_devices": devices,
        "total_devices": devices,
        "partial": flags,
        "missing": names | st.lists(st.just("m"), min_size=60, max_size=70),
        "unmeasured": names,
        "coverage": st.dictionaries(st.sampled_from(METRICS), coverage_entries, max_size=2)
        | st.sampled_from([{"devices": None}, []]),
        "agent_version": st.one_of(st.text(max_size=70), st.none(), st.integers()),
        "report_id": report_ids,
    }
    for name in draw(st.lists(st.sampled_from(sorted(changes)), unique=True, max_size=4)):
        body[name] = draw(changes[name])
    for name in draw(st.lists(st.sampled_from(sorted(base())), unique=True, max_size=3)):
        body.pop(name, None)
    if draw(st.booleans()) and draw(st.booleans()):
        body[draw(st.sampled_from(["surprise", "id", "Customer_id", "legacy"]))] = 1
    if body.get("report_id") == "derived":
        try:
            body["report_id"] = str(
                derive_report_id(
                    body["customer_id"],
                    body["instance_id"],
                    datetime.fromisoformat(body["window_start"]),
                    datetime.fromisoformat(body["window_end"]),
                )
            )
        except (KeyError, TypeError, ValueError):
            body.pop("report_id")
    if draw(st.booleans()) and draw(st.booleans()):
        body = {
            key: body[key]
            for key in ("customer_id", "instance_id", "metrics", "active_devices")
            if key in body
        }
    text = json.dumps(body, allow_nan=True, ensure_ascii=draw(st.booleans()))
    return _mangle(draw, text).encode("utf-8", "surrogatepass")


def _mangle(draw: st.DrawFn, text: str) -> str:
    """Sometimes a duplicated key, odd whitespace or a broken byte: what json.dumps never writes."""
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return text[:-1] + ', "customer_id": "cust_2"}'
    if choice == 1:
        return "\t\n " + text.replace(", ", " ,\r\n") + " \n"
    if choice == 2 and len(text) > 2:
        cut = draw(st.integers(1, len(text) - 1))
        broken = draw(st.sampled_from(["", "\x00", "\\", '"', "}", "\ud800"]))
        return text[:cut] + broken + text[cut:]
    if choice == 3:
        return text.replace('"metrics": {', '"metrics": {"devices": 2, ', 1)
    return text


def service() -> IngestService:
    return IngestService(
        ReportStore(create_engine("sqlite+aiosqlite:///:memory:")),
        MetricCatalogue.default(),
        ManualClock(NOW),
        CollectorMetrics(CollectorRegistry()),
        legacy_window=timedelta(hours=1),
    )


def by_schema(body: bytes) -> UsageReport | None:
    """What the shared schema makes of a body: a v1 report, or None (refused, or legacy)."""
    try:
        raw = json.loads(body)
    except ValueError:
        return None
    if not isinstance(raw, dict) or is_legacy_body(raw):
        return None
    try:
        return UsageReport.model_validate(raw)
    except ValidationError:
        return None


def outcome(decode: Any, body: bytes) -> tuple[str, Any]:
    """A decode's result, comparable: the report and shape, or the error as the API shows it."""
    try:
        report, legacy = decode(body, "application/json", "key-1")
    except CollectorError as exc:
        return "refused", (exc.status_code, exc.code, exc.field, exc.detail)
    return "accepted", (report.model_dump(), report.model_fields_set, legacy)


def assert_agree(body: bytes) -> None:
    fast = decode_report(body)
    schema = by_schema(body)
    if fast is not None:
        assert schema is not None, "the fast path accepted a body the schema refuses"
        assert fast == schema
        assert fast.model_dump() == schema.model_dump()
        assert fast.model_fields_set == schema.model_fields_set
        assert fast.fingerprint() == schema.fingerprint()
        for name, cover in fast.coverage.items():
            assert cover.model_fields_set == schema.coverage[name].model_fields_set
    ingest = service()
    assert outcome(ingest.decode, body) == outcome(ingest.decode_with_schema, body)


@settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(bodies())
@example(json.dumps(base()).encode())
@example(json.dumps({**base(), "window_start": "2026-03-10T10:00:00Z"}).encode())
@example(json.dumps({**base(), "metrics": {"devices": float("nan")}}, allow_nan=True).encode())
@example(json.dumps({**base(), "metrics": {"devices": 10**30}}).encode())
@example(json.dumps({**base(), "active_devices": 10**30}).encode())
@example(json.dumps({**base(), "report_id": str(uuid.uuid4())}).encode())
@example(json.dumps({k: base()[k] for k in ("customer_id", "instance_id", "metrics")}).encode())
@example(b'{"customer_id": "\\ud800cust_1", "instance_id": "i-1"}')
def test_fast_path_and_schema_agree_on_every_body(body: bytes) -> None:
    assert_agree(body)


def test_the_canonical_body_takes_the_fast_path() -> None:
    """The shape agents send is what the fast path is for: it must not fall back."""
    body = base()
    report = decode_report(json.dumps(body).encode())
    assert report is not None
    assert report.id == derive_report_id("cust_1", "cluster-a", START, END)
    coverage = {"devices": {"samples": 59, "expected": 60, "series": 3, "method": "grid"}}
    with_more = {**body, "coverage": coverage, "missing": ["storage_gb"], "partial": True}
    assert decode_report(json.dumps(with_more).encode()) is not None


@pytest.mark.parametrize(
    "body",
    [
        b"[1, 2]",
        b"not json",
        b"\xef\xbb\xbf" + json.dumps(base()).encode(),
        json.dumps({**base(), "window_start": 1773133200}).encode(),
        json.dumps({**base(), "customer_id": "caf\u00e9"}).encode(),
        json.dumps({**base(), "active_devices": 7.0}).encode(),
    ],
)
def test_other_shapes_are_left_to_the_schema(body: bytes) -> None:
    assert decode_report(body) is None
    assert_agree(body)
