"""Response bodies of the collector's HTTP API."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, Field

from collector.adapters.db.tables import ReportRow, StoredReport
from collector.services.leader import LeaderStatus
from collector.services.usage import PeriodSource
from common.billing_periods import PeriodBounds
from common.schema import MetricCoverage, MetricNumber


class ErrorBody(BaseModel):
    """The one error shape every endpoint answers with."""

    error: str = Field(description="Stable machine-readable code, e.g. validation_error.")
    detail: str = Field(description="Human-readable explanation.")
    field: str | None = Field(default=None, description="Path of the offending field, if any.")


class ReportOut(BaseModel):
    id: int
    report_id: uuid.UUID
    customer_id: str
    instance_id: str
    window_start: datetime
    window_end: datetime
    metrics: dict[str, MetricNumber]
    active_devices: int | None
    total_devices: int | None
    partial: bool = Field(description="A source failed: the metrics in `missing` are left out.")
    missing: list[str]
    unmeasured: list[str] = Field(
        description="Metrics whose source answered without a sample in the window: not "
        "measured (no value in `metrics`), never a measured 0. Their usage, if any, is counted "
        "by the next window with samples."
    )
    coverage: dict[str, MetricCoverage] = Field(
        description="How completely each metric was measured, as the agent reported it "
        "(empty for reports from agents that do not report it)."
    )
    complete: bool = Field(description="Not partial and nothing unmeasured.")
    agent_version: str | None
    schema_version: int
    legacy: bool
    created_at: datetime

    @classmethod
    def of(cls, row: ReportRow | StoredReport) -> ReportOut:
        return cls(
            id=row.id,
            report_id=row.report_id,
            customer_id=row.customer_id,
            instance_id=row.instance_id,
            window_start=row.window_start,
            window_end=row.window_end,
            metrics=row.metrics,
            active_devices=row.active_devices,
            total_devices=row.total_devices,
            partial=row.partial,
            missing=row.missing,
            unmeasured=row.unmeasured,
            coverage=row.coverage,
            complete=not row.partial and not row.unmeasured,
            agent_version=row.agent_version,
            schema_version=row.schema_version,
            legacy=row.legacy,
            created_at=row.created_at,
        )


class IngestResponse(BaseModel):
    message: str
    stripe_reported: bool = Field(
        description="Whether Stripe has acknowledged this usage. Ingest never waits on Stripe, "
        "so a new report is always false here; forwarding happens in the background."
    )
    duplicate: bool
    report: ReportOut
    billing_periods: list[PeriodBounds] = Field(
        default_factory=list,
        description="The customer's known billing periods ([start, end), oldest first). An "
        "agent never lets a window or a compacted report cross one of their boundaries.",
    )


class HistoryResponse(BaseModel):
    customer_id: str
    reports: list[ReportOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next, older page.")


INCOMPLETE_METRIC = (
    "Windows of the period whose report lists this metric in `missing` or `unmeasured`."
)
INCOMPLETE_REPORTS = "Reports of the period that are partial or list a metric as unmeasured."
COMPLETE = "Every window of the period measured every metric (`incomplete_windows` is 0)."


class MetricTotalOut(BaseModel):
    name: str
    semantics: str
    unit: str
    value: Decimal
    reports: int = Field(description="Windows that measured this metric.")
    incomplete_windows: int = Field(description=INCOMPLETE_METRIC)


class TotalsResponse(BaseModel):
    customer_id: str
    since: datetime
    until: datetime
    period_source: PeriodSource = Field(
        description="Where the period came from: `subscription`, the customer's current billing "
        "period (the one `/reconcile` uses); `calendar`, the current UTC month (no link, no "
        "known period or no live subscription); `request`, both `since` and `until` were given."
    )
    complete: bool = Field(description=COMPLETE)
    incomplete_windows: int = Field(description=INCOMPLETE_REPORTS)
    totals: list[MetricTotalOut] = Field(
        description="One entry per metric measured in at least one window of the period."
    )


class LeadershipOut(BaseModel):
    """This replica's part in electing the one that runs the once-only tasks."""

    leading: bool = Field(
        description="Whether this replica leads: it alone runs the reconciler, the ageing "
        "warnings, subscription reads and the unlinked-usage warnings. On SQLite the one "
        "process always leads."
    )
    since: datetime | None = Field(
        description="When this replica took the lead, or began following (it lost the lead, or "
        "found it taken at its first election); null before its first election."
    )
    tasks: list[str] = Field(
        description="The once-only tasks running here now (reconciler, ageing): empty on a "
        "follower; a task that failed is left out."
    )

    @classmethod
    def of(cls, status: LeaderStatus) -> LeadershipOut:
        return cls(leading=status.leading, since=status.since, tasks=status.tasks)


class ReplicaLeadershipOut(LeadershipOut):
    replica: str = Field(
        description="This replica's identity (host name and process id), as in its "
        "leadership_acquired and leadership_lost log lines."
    )

    @classmethod
    def of(cls, status: LeaderStatus) -> ReplicaLeadershipOut:
        return cls(
            leading=status.leading, since=status.since, tasks=status.tasks, replica=status.replica
        )


class HealthResponse(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
    leadership: LeadershipOut | None = Field(
        default=None,
        description="Readiness only: whether this replica leads (without its identity, which "
        "GET /api/forwarding/status shows to operators).",
    )
