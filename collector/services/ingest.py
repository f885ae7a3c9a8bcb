"""Ingest: decode, validate and store a usage report exactly once.

A body in the shape agents send is decoded by ``report_decoding`` (msgspec); every other body,
and so every refusal, by the shared pydantic schema.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from collector.adapters.db.reports import ReportStore
from collector.adapters.db.tables import StoredReport
from collector.errors import (
    Conflict,
    InvalidJson,
    InvalidWindow,
    UnknownMetric,
    UnsupportedMediaType,
    ValidationFailed,
)
from collector.services.period_hints import PeriodHints
from collector.services.report_decoding import decode_report
from collector.telemetry import CollectorMetrics
from common.billing_periods import PeriodBounds
from common.catalogue import MetricCatalogue, NotWholeNumberError
from common.clock import Clock
from common.logs import emit
from common.schema import (
    REPORT_ID_NAMESPACE,
    LegacyUsageReport,
    UsageReport,
    is_legacy_body,
)
from common.windows import utc_text

MAX_FUTURE = timedelta(minutes=5)
MAX_AGE = timedelta(days=35)
JSON_MEDIA_TYPES = ("application/json", "application/merge-patch+json")


@dataclass(frozen=True)
class IngestResult:
    row: StoredReport
    created: bool
    billing_periods: list[PeriodBounds] = field(default_factory=list)


def _field_path(error: dict[str, Any]) -> str | None:
    location = [str(part) for part in error.get("loc", ()) if part not in ("function-after",)]
    return ".".join(location) or None


def validation_failure(exc: ValidationError) -> ValidationFailed:
    """The first pydantic error as one collector error, naming the field."""
    first = exc.errors(include_url=False)[0]
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return ValidationFailed(message, field=_field_path(dict(first)))


class IngestService:
    """Turns a request body into a stored report; a repeat of a stored report is a no-op."""

    def __init__(
        self,
        store: ReportStore,
        catalogue: MetricCatalogue,
        clock: Clock,
        metrics: CollectorMetrics,
        *,
        legacy_window: timedelta,
        max_body_bytes: int = 65536,
        hints: PeriodHints | None = None,
    ) -> None:
        self.max_body_bytes = max_body_bytes
        self._hints = hints
        self._store = store
        self._catalogue = catalogue
        self._clock = clock
        self._metrics = metrics
        self._legacy_window = legacy_window
        # Labelled children looked up once: a lookup per report took a lock and a tuple each.
        self._results = {r: metrics.reports.labels(r) for r in ("created", "duplicate")}
        self._missing = metrics.incomplete_reports.labels("missing")
        self._unmeasured = metrics.incomplete_reports.labels("unmeasured")
        self._values: dict[str, Any] = {}
        self._names = frozenset(catalogue.names)

    def decode(
        self, body: bytes, content_type: str | None, idempotency_key: str | None = None
    ) -> tuple[UsageReport, bool]:
        """Parse and validate a body; returns the report and whether it came in the legacy shape."""
        _check_media_type(content_type)
        report = decode_report(body)
        if report is None:
            return self._decode_by_schema(body, idempotency_key)
        self._check(report, check_id=False)  # the fast path takes only the derived id
        return report, False

    def decode_canonical(self, body: bytes) -> UsageReport | None:
        """The report if ``body`` is in the shape agents send and passes every check, else None.

        Raises the check's error for a body in that shape that fails one (an unknown metric,
        a window out of range); ``None`` says only that the schema must decide.
        """
        report = decode_report(body)
        if report is not None:
            self._check(report, check_id=False)
        return report

    def decode_with_schema(
        self, body: bytes, content_type: str | None, idempotency_key: str | None = None
    ) -> tuple[UsageReport, bool]:
        """``decode`` by the pydantic schema alone: any body the fast path leaves, every refusal."""
        _check_media_type(content_type)
        return self._decode_by_schema(body, idempotency_key)

    def _decode_by_schema(
        self, body: bytes, idempotency_key: str | None
    ) -> tuple[UsageReport, bool]:
        try:
            raw = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidJson(f"body is not valid JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise ValidationFailed("body must be a JSON object", field=None)
        legacy = is_legacy_body(raw)
        try:
            report = (
                self._from_legacy(raw, idempotency_key)
                if legacy
                else UsageReport.model_validate(raw)
            )
        except ValidationError as exc:
            raise validation_failure(exc) from exc
        self._check(report, check_id=not legacy)
        return report, legacy

    def _check(self, report: UsageReport, *, check_id: bool) -> None:
        """What the schema cannot know: the catalogue, the collector's clock, the derived id."""
        self._check_metrics(report)
        self._check_window(report)
        if check_id and report.id != report.expected_report_id:
            raise ValidationFailed(
                "report_id must be the id derived from customer_id, instance_id and the window "
                f"({report.expected_report_id}); leave it out and the collector derives it",
                field="report_id",
            )

    def _from_legacy(self, raw: dict[str, Any], idempotency_key: str | None) -> UsageReport:
        legacy = LegacyUsageReport.model_validate(raw)
        end = self._clock.now()
        report_id = None
        if idempotency_key:
            report_id = uuid.uuid5(
                REPORT_ID_NAMESPACE, f"legacy\x1f{legacy.customer_id}\x1f{idempotency_key}"
            )
        return UsageReport(
            report_id=report_id,
            customer_id=legacy.customer_id,
            instance_id=legacy.instance_id,
            window_start=end - self._legacy_window,
            window_end=end,
            metrics=legacy.metrics,
            active_devices=legacy.active_devices,
            total_devices=legacy.total_devices,
        )

    def _check_metrics(self, report: UsageReport) -> None:
        if not self._names.issuperset(report.metrics):
            unknown = sorted(set(report.metrics) - self._names)
            raise UnknownMetric(
                f"unknown metric {', '.join(map(repr, unknown))}; "
                f"allowed: {', '.join(self._catalogue.names)}",
                field=f"metrics.{unknown[0]}",
            )

        for name, value in report.metrics.items():
            if type(value) is int:
                continue  # a whole number: every rounding rule takes it as it is
            definition = self._catalogue[name]
            try:
                definition.to_billable(value)
            except NotWholeNumberError as exc:
                raise ValidationFailed(str(exc), field=f"metrics.{name}") from exc

    def _check_window(self, report: UsageReport) -> None:
        now = self._clock.now()
        if report.window_end > now + MAX_FUTURE:
            raise InvalidWindow(
                f"window_end {report.window_end.isoformat()} is more than 5 minutes in the future "
                f"(collector time {now.isoformat()})",
                field="window_end",
            )
        if report.window_start < now - MAX_AGE:
            raise InvalidWindow(
                f"window_start {report.window_start.isoformat()} is older than the 35 days "
                "Stripe accepts usage for",
                field="window_start",
            )

    async def store(self, report: UsageReport, *, legacy: bool = False) -> IngestResult:
        """Store ``report`` once; a retry gets the stored row, different content a conflict."""
        started = self._clock.monotonic()
        row = _to_row(report, legacy=legacy, received_at=self._clock.now())
        stored, created = await self._store.insert_once(row)
        if not created and stored.fingerprint != row["fingerprint"]:
            self._metrics.reports.labels("conflict").inc()
            raise Conflict(
                f"report {report.id} was already received with different content; "
                "the stored report is unchanged",
                field="report_id",
            )
        self._results["created" if created else "duplicate"].inc()
        if created:
            for name in report.metrics:
                counter = self._values.get(name)
                if counter is None:
                    counter = self._values[name] = self._metrics.metric_values.labels(name)
                counter.inc()
            if report.partial:
                self._missing.inc()
            if report.unmeasured:
                self._unmeasured.inc()
        _log_stored(report, created)
        periods = await self._hints.for_customer(report.customer_id) if self._hints else []
        self._metrics.ingest_seconds.observe(max(0.0, self._clock.monotonic() - started))
        return IngestResult(stored, created, periods)

    def rejected(self) -> None:
        self._metrics.reports.labels("rejected").inc()


def _check_media_type(content_type: str | None) -> None:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type not in JSON_MEDIA_TYPES:
        raise UnsupportedMediaType(
            f"content type must be application/json, got {media_type or 'none'}",
            field="content-type",
        )


def _log_stored(report: UsageReport, created: bool) -> None:
    """``report_stored``: INFO for a new report, DEBUG for a repeat. Plain values only: hot path."""
    emit(
        "info" if created else "debug",
        "report_stored",
        {
            "customer_id": report.customer_id,
            "instance_id": report.instance_id,
            "report_id": str(report.id),
            "window_start": utc_text(report.window_start),
            "window_end": utc_text(report.window_end),
            "metrics": list(report.metrics),
            "result": "created" if created else "duplicate",
            "partial": report.partial,
        },
    )


def _to_row(report: UsageReport, *, legacy: bool, received_at: datetime) -> dict[str, Any]:
    return dict(
        report_id=report.id,
        customer_id=report.customer_id,
        instance_id=report.instance_id,
        window_start=report.window_start,
        window_end=report.window_end,
        schema_version=report.schema_version,
        legacy=legacy,
        metrics=dict(report.metrics),
        active_devices=report.active_devices,
        total_devices=report.total_devices,
        partial=report.partial,
        missing=list(report.missing),
        unmeasured=list(report.unmeasured),
        coverage={name: c.model_dump() for name, c in report.coverage.items()},
        agent_version=report.agent_version,
        fingerprint=report.fingerprint(include_window=not legacy),
        created_at=received_at,
    )
