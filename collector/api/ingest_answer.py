"""The answer to a stored report, encoded in one msgspec call.

``IngestResponse`` (``collector.api.schemas``) documents the answer and stays its definition.
Building it and its ``ReportOut`` as pydantic models, then dumping them again for Litestar, cost
more than a report's whole insert; this encodes the same fields in the same order straight from
the stored row. Where the row holds anything the plain encoding could render differently (a time
not in UTC, a coverage entry not in its stored form) the answer goes through the models instead.
A test compares the bytes of both ways.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec

from collector.adapters.db.tables import StoredReport
from collector.api.schemas import IngestResponse, ReportOut
from collector.services.ingest import IngestResult

_COVERAGE_KEYS = ("samples", "expected", "series", "method")
_ENCODER = msgspec.json.Encoder()
CREATED = "Usage reported successfully"
REPEATED = "Usage report already received"


def answer_body(result: IngestResult) -> bytes:
    """The JSON body of the answer to ``result``, byte for byte what ``IngestResponse`` gives."""
    fields = _plain_fields(result)
    if fields is None:
        return _ENCODER.encode(_model(result).model_dump(mode="json"))
    return _ENCODER.encode(fields)


def _model(result: IngestResult) -> IngestResponse:
    return IngestResponse(
        message=CREATED if result.created else REPEATED,
        stripe_reported=False,
        duplicate=not result.created,
        report=ReportOut.of(result.row),
        billing_periods=result.billing_periods,
    )


def _utc(moment: datetime) -> bool:
    return moment.tzinfo is UTC


def _number(value: Any) -> bool:
    return type(value) is int or type(value) is float


def _coverage(entry: Any) -> bool:
    """As stored from ``MetricCoverage.model_dump()``: its four fields in order, typed."""
    return (
        isinstance(entry, dict)
        and tuple(entry) == _COVERAGE_KEYS
        and type(entry["samples"]) is int
        and type(entry["expected"]) is int
        and type(entry["series"]) is int
        and type(entry["method"]) is str
    )


def _plain(row: StoredReport) -> bool:
    """Whether every field already has the type ``ReportOut`` would give it."""
    return (
        _utc(row.window_start)
        and _utc(row.window_end)
        and _utc(row.created_at)
        and all(_number(v) for v in row.metrics.values())
        and all(_coverage(c) for c in row.coverage.values())
        and all(type(name) is str for name in (*row.missing, *row.unmeasured))
        and (row.agent_version is None or type(row.agent_version) is str)
        and (row.active_devices is None or type(row.active_devices) is int)
        and (row.total_devices is None or type(row.total_devices) is int)
        and type(row.partial) is bool
        and type(row.legacy) is bool
        and type(row.id) is int
        and type(row.schema_version) is int
        and type(row.customer_id) is str
        and type(row.instance_id) is str
        and type(row.report_id) is uuid.UUID
    )


def _plain_fields(result: IngestResult) -> dict[str, Any] | None:
    row: StoredReport = result.row
    periods = result.billing_periods
    if not _plain(row) or not all(_utc(p.start) and _utc(p.end) for p in periods):
        return None
    return {
        "message": CREATED if result.created else REPEATED,
        "stripe_reported": False,
        "duplicate": not result.created,
        "report": {
            "id": row.id,
            "report_id": row.report_id,
            "customer_id": row.customer_id,
            "instance_id": row.instance_id,
            "window_start": row.window_start,
            "window_end": row.window_end,
            "metrics": row.metrics,
            "active_devices": row.active_devices,
            "total_devices": row.total_devices,
            "partial": row.partial,
            "missing": row.missing,
            "unmeasured": row.unmeasured,
            "coverage": row.coverage,
            "complete": not row.partial and not row.unmeasured,
            "agent_version": row.agent_version,
            "schema_version": row.schema_version,
            "legacy": row.legacy,
            "created_at": row.created_at,
        },
        "billing_periods": [{"start": p.start, "end": p.end} for p in periods],
    }
