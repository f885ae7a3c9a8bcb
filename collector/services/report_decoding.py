"""The fast path for a report body: msgspec decodes the shape agents send, pydantic the rest.

``common.schema.UsageReport`` stays the one definition of a valid report. This path accepts a
subset of what the schema accepts (schema version 1 in its canonical form: RFC 3339 times,
printable ASCII identifiers, JSON numbers and booleans where the schema wants them, no
``report_id`` or the one derived from the window) and builds a report equal to the one the
schema would build. Anything else, valid or not, gives ``None``
and goes through the schema, so every refusal, and its message, still comes from the schema.
``tests/unit/collector/test_fast_decode.py`` holds the two paths to that with generated bodies.
"""

from __future__ import annotations

import functools
import re
import uuid
from datetime import datetime
from typing import Any, Literal

import msgspec
from annotated_types import MaxLen
from msgspec import UNSET, UnsetType
from pydantic import BaseModel

from common.schema import (
    EARLIEST,
    LATEST,
    MAX_COVERAGE_COUNT,
    MAX_DEVICES,
    MAX_METRIC_VALUE,
    MAX_METRICS_PER_REPORT,
    MetricCoverage,
    UsageReport,
    check_metric_value,
    derive_report_id,
)
from common.windows import as_utc

# Printable ASCII without the space: every such string passes the schema's identifier check
# (not blank, no control characters); other identifiers are left to the schema.
_IDENTIFIER = re.compile(r"[!-~]{1,128}")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?")
_OFFSET = re.compile(r"Z|[+-][0-9]{2}:[0-9]{2}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MAX_AGENT_VERSION: int = next(
    rule.max_length
    for rule in UsageReport.model_fields["agent_version"].metadata
    if isinstance(rule, MaxLen)
)


class _Coverage(msgspec.Struct, forbid_unknown_fields=True):
    samples: int
    expected: int
    series: int | UnsetType = UNSET
    method: Literal["raw", "grid", "scrape", "api"] | UnsetType = UNSET


class _Body(msgspec.Struct, forbid_unknown_fields=True):
    customer_id: str
    instance_id: str
    window_start: str
    window_end: str
    schema_version: Literal[1] | UnsetType = UNSET
    report_id: str | UnsetType | None = UNSET
    metrics: dict[str, int | float] | UnsetType = UNSET
    active_devices: int | UnsetType | None = UNSET
    total_devices: int | UnsetType | None = UNSET
    partial: bool | UnsetType = UNSET
    missing: list[str] | UnsetType = UNSET
    unmeasured: list[str] | UnsetType = UNSET
    coverage: dict[str, _Coverage] | UnsetType = UNSET
    agent_version: str | UnsetType | None = UNSET


_DECODER = msgspec.json.Decoder(_Body)
_FIELDS = tuple(_Body.__struct_fields__)


class _Deferred(Exception):
    """This body is for the schema to judge."""


def decode_report(body: bytes) -> UsageReport | None:
    """The report in ``body`` if it has the canonical v1 shape and is valid; otherwise ``None``."""
    try:
        raw = _DECODER.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    try:
        return _report(raw)
    except (_Deferred, ValueError, OverflowError):
        return None


def _report(raw: _Body) -> UsageReport:
    customer_id = _identifier(raw.customer_id)
    instance_id = _identifier(raw.instance_id)
    window_start = _time(raw.window_start)
    window_end = _time(raw.window_end)
    if window_end <= window_start:
        raise _Deferred
    metrics = _given(raw.metrics, {})
    if len(metrics) > MAX_METRICS_PER_REPORT:
        raise _Deferred
    for name, value in metrics.items():
        # A whole number from 0 to 1e12 has at most 13 significant digits: nothing to check.
        if type(value) is not int or not 0 <= value <= MAX_METRIC_VALUE:
            check_metric_value(name, value)
    missing = _listed(_given(raw.missing, []))
    unmeasured = _listed(_given(raw.unmeasured, []))
    coverage = _given(raw.coverage, {})
    if len(coverage) > MAX_METRICS_PER_REPORT:
        raise _Deferred
    agent_version = _given(raw.agent_version, None)
    if agent_version is not None and len(agent_version) > MAX_AGENT_VERSION:
        raise _Deferred
    report_id = derive_report_id(customer_id, instance_id, window_start, window_end)
    given_id = _given(raw.report_id, None)
    if given_id is not None and _uuid(given_id) != report_id:
        raise _Deferred
    values: dict[str, Any] = {
        "schema_version": 1,
        "report_id": report_id,
        "customer_id": customer_id,
        "instance_id": instance_id,
        "window_start": window_start,
        "window_end": window_end,
        "metrics": metrics,
        "active_devices": _devices(raw.active_devices),
        "total_devices": _devices(raw.total_devices),
        "partial": bool(missing) or _given(raw.partial, False),
        "missing": missing,
        "unmeasured": unmeasured,
        "coverage": {name: _coverage(c) for name, c in coverage.items()},
        "agent_version": agent_version,
    }
    given = {name for name in _FIELDS if getattr(raw, name) is not UNSET}
    return _constructed(UsageReport, given, values)


def _plain_model(model: type[BaseModel]) -> type[BaseModel]:
    """``model``, checked to be one ``_constructed`` builds as ``model_construct`` would."""
    if (
        model.__pydantic_post_init__
        or model.__private_attributes__
        or model.model_config.get("extra") == "allow"
        or any(f.alias or f.validation_alias for f in model.model_fields.values())
    ):
        raise TypeError(f"{model.__name__} needs model_construct: aliases, extras or post-init")
    return model


def _constructed[M: BaseModel](model: type[M], given: set[str], values: dict[str, Any]) -> M:
    """``model.model_construct(given, **values)`` for ``values`` holding every field in order.

    ``model_construct`` looks up each field's aliases and defaults on every call: a tenth of
    the fast path's time, for models that have none (``_plain_model``).
    """
    built = model.__new__(model)
    object.__setattr__(built, "__dict__", values)
    object.__setattr__(built, "__pydantic_fields_set__", given)
    object.__setattr__(built, "__pydantic_extra__", None)
    object.__setattr__(built, "__pydantic_private__", None)
    return built


_plain_model(UsageReport)
_plain_model(MetricCoverage)


def _given(value: Any, default: Any) -> Any:
    return default if value is UNSET else value


def _identifier(value: str) -> str:
    if _IDENTIFIER.fullmatch(value) is None:
        raise _Deferred
    return value


@functools.lru_cache(maxsize=4096)
def _time(value: str) -> datetime:
    """An RFC 3339 time with an offset, in UTC, between 2000 and 2100.

    A fleet reports the same few window bounds all hour, so each text is parsed once (a text
    that is refused raises, and is not remembered).
    """
    local = _TIME.match(value)
    if local is None or _OFFSET.fullmatch(value, local.end()) is None:
        raise _Deferred
    moment = as_utc(datetime.fromisoformat(value))
    if not EARLIEST <= moment < LATEST:
        raise _Deferred
    return moment


def _uuid(value: str) -> uuid.UUID:
    if _UUID.fullmatch(value) is None:
        raise _Deferred
    return uuid.UUID(value)


def _devices(value: int | UnsetType | None) -> int | None:
    if value is UNSET or value is None:
        return None
    if not 0 <= value <= MAX_DEVICES:
        raise _Deferred
    return value


def _listed(names: list[str]) -> list[str]:
    if len(names) > MAX_METRICS_PER_REPORT:
        raise _Deferred
    return names


def _coverage(raw: _Coverage) -> MetricCoverage:
    counts = {"samples": raw.samples, "expected": raw.expected, "series": _given(raw.series, 0)}
    if not all(0 <= count <= MAX_COVERAGE_COUNT for count in counts.values()):
        raise _Deferred
    given = {name for name in _Coverage.__struct_fields__ if getattr(raw, name) is not UNSET}
    return _constructed(MetricCoverage, given, {**counts, "method": _given(raw.method, "raw")})
