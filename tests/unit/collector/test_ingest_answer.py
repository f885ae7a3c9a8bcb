"""The ingest answer encoded straight from the row is, byte for byte, Litestar's IngestResponse."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from litestar.plugins.pydantic import PydanticInitPlugin
from litestar.serialization import encode_json, get_serializer

from collector.adapters.db.tables import StoredReport
from collector.api.ingest_answer import _model, _plain_fields, answer_body
from collector.services.ingest import IngestResult
from common.billing_periods import PeriodBounds

SERIALIZER = get_serializer(PydanticInitPlugin.encoders())
T0 = datetime(2026, 3, 1, tzinfo=UTC)

times = st.one_of(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)).map(
        lambda t: t.replace(tzinfo=UTC)
    ),
    st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2099, 12, 31),
        timezones=st.sampled_from([timezone(timedelta(hours=2)), timezone(timedelta(seconds=7))]),
    ),
)
numbers = st.one_of(st.integers(0, 10**12), st.floats(0, 1e12, allow_nan=False), st.booleans())
coverage = st.one_of(
    st.builds(
        lambda s, e, n, m: {"samples": s, "expected": e, "series": n, "method": m},
        st.integers(0, 100),
        st.integers(0, 100),
        st.integers(0, 5),
        st.sampled_from(["raw", "grid", "scrape", "api"]),
    ),
    st.builds(lambda s, e: {"expected": e, "samples": s}, st.integers(0, 9), st.integers(0, 9)),
)


@st.composite
def results(draw: st.DrawFn) -> IngestResult:
    start = draw(times)
    row = StoredReport(
        id=draw(st.integers(1, 2**62)),
        report_id=draw(st.uuids()),
        customer_id=draw(st.text(max_size=20)),
        instance_id=draw(st.text(max_size=20)),
        window_start=start,
        window_end=draw(st.one_of(st.just(start + timedelta(hours=1)), times)),
        schema_version=1,
        legacy=draw(st.booleans()),
        metrics=draw(st.dictionaries(st.text(max_size=8), numbers, max_size=4)),
        active_devices=draw(st.none() | st.integers(0, 10**9)),
        total_devices=draw(st.none() | st.integers(0, 10**9)),
        partial=draw(st.booleans()),
        missing=draw(st.lists(st.text(max_size=8), max_size=2)),
        unmeasured=draw(st.lists(st.text(max_size=8), max_size=2)),
        coverage=draw(st.dictionaries(st.text(max_size=8), coverage, max_size=2)),
        agent_version=draw(st.none() | st.text(max_size=10)),
        fingerprint="f" * 64,
        created_at=draw(times),
    )
    periods = [
        PeriodBounds(start=T0 + timedelta(days=30 * i), end=T0 + timedelta(days=30 * (i + 1)))
        for i in range(draw(st.integers(0, 3)))
    ]
    return IngestResult(row, draw(st.booleans()), periods)


def through_litestar(result: IngestResult) -> bytes:
    """What Litestar wrote for a handler returning the IngestResponse model."""
    return encode_json(_model(result), SERIALIZER)


@given(results())
def test_the_answer_is_the_bytes_litestar_gives_for_the_model(result: IngestResult) -> None:
    assert answer_body(result) == through_litestar(result)


def test_a_plain_row_takes_the_plain_encoding() -> None:
    row: dict[str, Any] = {
        "id": 1,
        "report_id": uuid.UUID(int=7),
        "customer_id": "cust_1",
        "instance_id": "i-1",
        "window_start": T0,
        "window_end": T0 + timedelta(hours=1),
        "schema_version": 1,
        "legacy": False,
        "metrics": {"devices": 3, "storage_gb": 1.5},
        "active_devices": 3,
        "total_devices": 5,
        "partial": False,
        "missing": [],
        "unmeasured": [],
        "coverage": {"devices": {"samples": 1, "expected": 1, "series": 1, "method": "raw"}},
        "agent_version": "1.0",
        "fingerprint": "f" * 64,
        "created_at": T0 + timedelta(hours=2),
    }
    result = IngestResult(StoredReport(**row), True, [])
    assert _plain_fields(result) is not None
    assert answer_body(result) == through_litestar(result)
