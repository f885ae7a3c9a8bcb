"""The usage report, version 1, and the legacy body of the seed's exporter."""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from json.encoder import encode_basestring_ascii
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from common.windows import as_utc, utc_text

SCHEMA_VERSION = 1
REPORT_ID_NAMESPACE = uuid.UUID("6f0e2a8c-4b1d-5c3e-9a7f-2d8b1e4c6a90")
_NAMESPACE_BYTES = REPORT_ID_NAMESPACE.bytes
MAX_IDENTIFIER_LENGTH = 128
MAX_METRIC_VALUE = 1e12
MAX_SIGNIFICANT_DIGITS = 15
MAX_METRICS_PER_REPORT = 64
MAX_DEVICES = 10**9
MAX_COVERAGE_COUNT = 10**12
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def _check_identifier(value: str) -> str:
    if not value or not value.strip():
        raise ValueError("must not be empty")
    if len(value) > MAX_IDENTIFIER_LENGTH:
        raise ValueError(f"must be at most {MAX_IDENTIFIER_LENGTH} characters")
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in value):
        raise ValueError("must not contain control characters")
    if not value.isascii() and any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
        # JSON can escape half of a surrogate pair ("\ud800"); no UTF-8 text holds one.
        raise ValueError("must be Unicode text (a lone surrogate escape is not)")
    return value


Identifier = Annotated[str, AfterValidator(_check_identifier)]


def significant_digits(value: float | int) -> int:
    """How many significant decimal digits the shortest exact form of ``value`` has."""
    digits = Decimal(repr(value) if isinstance(value, float) else value).normalize().as_tuple()
    return len(digits.digits)


def check_metric_value(name: str, value: float | int) -> float | int:
    """Reject values Stripe could never bill: negative, NaN, infinite, too large or too precise."""
    if isinstance(value, bool):
        raise ValueError(f"metric {name!r} must be a number, not a boolean")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"metric {name!r} must be finite, got {value}")
    if value < 0:
        raise ValueError(f"metric {name!r} must not be negative, got {value}")
    if value > MAX_METRIC_VALUE:
        raise ValueError(f"metric {name!r} must be at most 1e12, got {value}")
    if significant_digits(value) > MAX_SIGNIFICANT_DIGITS:
        raise ValueError(f"metric {name!r} has more than 15 significant digits: {value}")
    return value


def check_metric_types(metrics: Any) -> Any:
    """Metric values must be JSON numbers: no strings, booleans or nulls coerced into numbers."""
    if isinstance(metrics, dict):
        for name, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
                raise ValueError(
                    f"metric {name!r} must be a number, got {type(value).__name__}: {value!r}"[:200]
                )
    return metrics


def _utc(value: datetime) -> datetime:
    """In UTC, between 2000 and 2100: what a billing window can be, and a database can store."""
    try:
        moment = as_utc(value)
    except OverflowError as exc:
        raise ValueError("must be a time between 2000 and 2100 (UTC)") from exc
    if not EARLIEST <= moment < LATEST:
        raise ValueError(f"must be a time between 2000 and 2100 (UTC), got {moment.isoformat()}")
    return moment


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]


def _check_metrics(metrics: dict[str, float | int]) -> dict[str, float | int]:
    for name, value in metrics.items():
        check_metric_value(name, value)
    return metrics


MetricNumber = Annotated[float | int, WithJsonSchema({"type": "number"})]
"""A metric value: published as one JSON number type (``integer`` would match twice)."""

Metrics = Annotated[
    dict[str, MetricNumber],
    BeforeValidator(check_metric_types),
    AfterValidator(_check_metrics),
]


def _json_count(value: int | None) -> str:
    if value is None:
        return "null"
    return repr(value) if type(value) is int else json.dumps(value)


def derive_report_id(
    customer_id: str, instance_id: str, window_start: datetime, window_end: datetime
) -> uuid.UUID:
    """The deterministic id of a window's report: a retry of the same window gets the same id.

    ``uuid.uuid5`` of the parts joined by U+001F, built as ``uuid5`` builds it.
    """
    name = (
        f"{customer_id}\x1f{instance_id}\x1f"
        f"{utc_text(as_utc(window_start), 'microseconds')}\x1f"
        f"{utc_text(as_utc(window_end), 'microseconds')}"
    )
    digest = hashlib.sha1(_NAMESPACE_BYTES + name.encode(), usedforsecurity=False).digest()
    return uuid.UUID(bytes=digest[:16], version=5)


class MetricCoverage(BaseModel):
    """How completely one metric was measured in a window.

    ``samples`` raw samples were read inside the window, where the scrape interval implies
    ``expected`` for the series seen. ``method`` says how the value was computed: ``raw``
    (every sample), ``grid`` (an expression evaluated at scrape-interval steps, which can miss a
    sample between them), ``scrape`` (a direct /metrics read) or ``api`` (the device API).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    samples: int = Field(ge=0, le=MAX_COVERAGE_COUNT)
    expected: int = Field(ge=0, le=MAX_COVERAGE_COUNT)
    series: int = Field(default=0, ge=0, le=MAX_COVERAGE_COUNT)
    method: Literal["raw", "grid", "scrape", "api"] = "raw"


class UsageReport(BaseModel):
    """One window of usage from one customer instance (schema version 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    report_id: uuid.UUID | None = None
    customer_id: Identifier
    instance_id: Identifier
    window_start: UtcDatetime
    window_end: UtcDatetime
    metrics: Metrics = Field(default_factory=dict, max_length=MAX_METRICS_PER_REPORT)
    active_devices: int | None = Field(default=None, ge=0, le=MAX_DEVICES)
    total_devices: int | None = Field(default=None, ge=0, le=MAX_DEVICES)
    partial: bool = False
    missing: list[str] = Field(default_factory=list, max_length=MAX_METRICS_PER_REPORT)
    unmeasured: list[str] = Field(default_factory=list, max_length=MAX_METRICS_PER_REPORT)
    """Metrics whose source answered but held no sample in the window: not a measured 0.

    Their usage, if any, is counted by the next window with samples. A compacted report lists
    a metric here when any of its parts did, even if another part measured it."""
    coverage: dict[str, MetricCoverage] = Field(
        default_factory=dict, max_length=MAX_METRICS_PER_REPORT
    )
    agent_version: str | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _check_window_and_id(self) -> UsageReport:
        if self.window_end <= self.window_start:
            raise ValueError(
                f"window_end ({self.window_end.isoformat()}) must be after "
                f"window_start ({self.window_start.isoformat()})"
            )
        if self.missing and not self.partial:
            object.__setattr__(self, "partial", True)
        if self.report_id is None:
            object.__setattr__(self, "report_id", self.expected_report_id)
        return self

    @property
    def complete(self) -> bool:
        """Every configured metric was measured: no source failed, none had a gap of samples."""
        return not self.partial and not self.unmeasured

    @property
    def expected_report_id(self) -> uuid.UUID:
        return derive_report_id(
            self.customer_id, self.instance_id, self.window_start, self.window_end
        )

    @property
    def id(self) -> uuid.UUID:
        """The report id, always set after validation."""
        assert self.report_id is not None
        return self.report_id

    def fingerprint(self, *, include_window: bool = True) -> str:
        """A digest of the billable content, used to tell a retry from a conflicting duplicate.

        Legacy reports get their window from the arrival time, so a legacy retry leaves it out.
        The digested text is ``canonical_content``'s ``json.dumps``; stored fingerprints compare
        against it, so its bytes never change.
        """
        return hashlib.sha256(self._canonical(include_window).encode()).hexdigest()

    def _canonical(self, include_window: bool) -> str:
        """``json.dumps(canonical_content, sort_keys=True, separators=(",", ":"))``, built directly.

        The keys are written in sorted order; json.dumps took a third of the fingerprint's time.
        """
        metrics = ",".join(
            f'{encode_basestring_ascii(name)}:"{float(value)!r}"'
            for name, value in sorted(self.metrics.items())
        )
        text = (
            f'{{"active_devices":{_json_count(self.active_devices)},'
            f'"customer_id":{encode_basestring_ascii(self.customer_id)},'
            f'"instance_id":{encode_basestring_ascii(self.instance_id)},'
            f'"metrics":{{{metrics}}},'
            f'"total_devices":{_json_count(self.total_devices)}'
        )
        if not include_window:
            return text + "}"
        return (
            f'{text},"window_end":"{utc_text(self.window_end, "microseconds")}",'
            f'"window_start":"{utc_text(self.window_start, "microseconds")}"}}'
        )

    def canonical_content(self, *, include_window: bool = True) -> dict[str, Any]:
        """What the fingerprint digests, as a mapping."""
        content: dict[str, Any] = {
            "customer_id": self.customer_id,
            "instance_id": self.instance_id,
            "metrics": {k: repr(float(v)) for k, v in sorted(self.metrics.items())},
            "active_devices": self.active_devices,
            "total_devices": self.total_devices,
        }
        if include_window:
            content["window_start"] = self.window_start.isoformat(timespec="microseconds")
            content["window_end"] = self.window_end.isoformat(timespec="microseconds")
        return content

    def to_json(self) -> str:
        return self.model_dump_json()


class LegacyUsageReport(BaseModel):
    """The exact body the seed's billing exporter posts: no id and no window."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customer_id: Identifier
    instance_id: Identifier
    active_devices: int | None = Field(default=None, ge=0, le=MAX_DEVICES)
    total_devices: int | None = Field(default=None, ge=0, le=MAX_DEVICES)
    metrics: Metrics = Field(default_factory=dict, max_length=MAX_METRICS_PER_REPORT)


def is_legacy_body(body: Any) -> bool:
    """True when a decoded body has the seed's shape rather than schema version 1."""
    return isinstance(body, dict) and not (
        {"schema_version", "window_start", "window_end"} & body.keys()
    )
