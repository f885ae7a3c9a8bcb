"""The collector's tables. Times are stored in UTC and always read back timezone-aware."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    TypeDecorator,
    Uuid,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC; SQLite's naive values come back tagged as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; attach UTC first")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ReportRow(Base):
    """One stored usage report, unique by its deterministic ``report_id``."""

    __tablename__ = "usage_reports"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    report_id: Mapped[uuid.UUID] = mapped_column(Uuid(), unique=True, nullable=False)
    customer_id: Mapped[str] = mapped_column(String(128), nullable=False)
    instance_id: Mapped[str] = mapped_column(String(128), nullable=False)
    window_start: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    window_end: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    schema_version: Mapped[int] = mapped_column(Integer, nullable=False)
    legacy: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    active_devices: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    total_devices: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    partial: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    missing: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    unmeasured: Mapped[list[str]] = mapped_column(
        JSON, nullable=False, default=list, server_default=text("'[]'")
    )
    coverage: Mapped[dict[str, Any]] = mapped_column(
        JSON, nullable=False, default=dict, server_default=text("'{}'")
    )
    agent_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)

    __table_args__ = (Index("ix_usage_reports_customer_window", "customer_id", "window_end", "id"),)


class ForwardRow(Base):
    """One metric of one stored report, waiting to reach Stripe (the transactional outbox)."""

    __tablename__ = "forwards"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    report_pk: Mapped[int] = mapped_column(BigInteger, nullable=False)
    report_id: Mapped[uuid.UUID] = mapped_column(Uuid(), nullable=False)
    customer_id: Mapped[str] = mapped_column(String(128), nullable=False)
    instance_id: Mapped[str] = mapped_column(String(128), nullable=False, default="")
    metric: Mapped[str] = mapped_column(String(63), nullable=False)
    kind: Mapped[str] = mapped_column(String(8), nullable=False, default="report")
    window_start: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    window_end: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    value: Mapped[str] = mapped_column(String(40), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    batch_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    period_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    generation: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)

    __table_args__ = (
        # Led by the report's key, which only grows: new rows append (migration 0009).
        Index("uq_forwards_report_metric", "report_pk", "report_id", "metric", unique=True),
        Index("ix_forwards_pending", "state", "customer_id", "metric", "window_end"),
        Index("ix_forwards_batch", "batch_id"),
    )


class BatchRow(Base):
    """One Stripe call's worth of usage, stored with its identifier before it is sent."""

    __tablename__ = "forward_batches"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(128), nullable=False)
    metric: Mapped[str] = mapped_column(String(63), nullable=False)
    semantics: Mapped[str] = mapped_column(String(16), nullable=False)
    mode: Mapped[str] = mapped_column(String(24), nullable=False)
    period_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    stripe_customer_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    period_start: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    period_end: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    identifier: Mapped[str] = mapped_column(String(100), nullable=False, unique=True)
    quantity: Mapped[int] = mapped_column(BigInteger, nullable=False)
    raw_value: Mapped[str] = mapped_column(String(40), nullable=False)
    event_timestamp: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    newest_window_end: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    members: Mapped[int] = mapped_column(Integer, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    dead_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)

    __table_args__ = (
        Index("ix_forward_batches_due", "state", "next_attempt_at"),
        Index(
            "uq_forward_batches_open",
            "customer_id",
            "metric",
            unique=True,
            postgresql_where=text("state = 'pending'"),
            sqlite_where=text("state = 'pending'"),
        ),
    )


class MeterStateRow(Base):
    """What Stripe has acknowledged per billing period and metric."""

    __tablename__ = "meter_state"

    period_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    metric: Mapped[str] = mapped_column(String(63), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(128), nullable=False)
    period_start: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    period_end: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    raw_total: Mapped[str] = mapped_column(String(40), nullable=False)
    billed_total: Mapped[int] = mapped_column(BigInteger, nullable=False)
    last_value: Mapped[str | None] = mapped_column(String(40), nullable=True)
    newest_window_end: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_event_timestamp: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    calls: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)


class CustomerLinkRow(Base):
    """Which Stripe customer and subscription bill a collector customer."""

    __tablename__ = "stripe_customers"

    customer_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    stripe_customer_id: Mapped[str] = mapped_column(String(64), nullable=False)
    subscription_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    subscription_status: Mapped[str | None] = mapped_column(String(32), nullable=True)
    subscription_created: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    subscription_checked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    event_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    generation: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)


class SubscriptionItemRow(Base):
    """A customer's subscription item per price lookup key, with its current period."""

    __tablename__ = "stripe_subscription_items"

    customer_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    lookup_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    subscription_item_id: Mapped[str] = mapped_column(String(64), nullable=False)
    price_id: Mapped[str] = mapped_column(String(64), nullable=False)
    period_start: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    period_end: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)


class BillingPeriodRow(Base):
    """One billing period of one subscription of one Stripe customer.

    ``subscription_id`` is empty for a UTC calendar month, used only where the Stripe customer
    has no subscription at all.
    """

    __tablename__ = "billing_periods"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(128), nullable=False)
    stripe_customer_id: Mapped[str] = mapped_column(String(64), nullable=False)
    subscription_id: Mapped[str] = mapped_column(String(64), nullable=False)
    period_start: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    period_end: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)

    __table_args__ = (
        Index(
            "uq_billing_periods_identity",
            "customer_id",
            "stripe_customer_id",
            "subscription_id",
            "period_start",
            unique=True,
        ),
    )


class AuditRow(Base):
    """An operator's or the collector's deliberate change to what is billed, kept for finance."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    action: Mapped[str] = mapped_column(String(32), nullable=False)
    customer_id: Mapped[str] = mapped_column(String(128), nullable=False)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)

    __table_args__ = (Index("ix_audit_log_customer", "customer_id", "at"),)


class ReconcileResultRow(Base):
    """The latest comparison of one customer's billed usage with Stripe's, with its time."""

    __tablename__ = "reconcile_results"

    customer_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    checked_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    stripe_customer_id: Mapped[str] = mapped_column(String(64), nullable=False)
    period_start: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    period_end: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    in_sync: Mapped[bool] = mapped_column(Boolean, nullable=False)
    drift: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    """Per metric: the collector's billable quantity, Stripe's, their difference and state;
    and ``pending_forwards``. Rows from before revision 0008 list the metrics out of sync only."""
    state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """in_sync, drifting or settling (``collector.services.drift``); null before 0008."""


class WebhookEventRow(Base):
    """Stripe events already processed, so a replay is processed once."""

    __tablename__ = "stripe_webhook_events"

    event_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(100), nullable=False)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)


@dataclass(frozen=True, slots=True)
class StoredReport:
    """A report as stored, without ORM instrumentation: the ingest path builds thousands."""

    id: int
    report_id: uuid.UUID
    customer_id: str
    instance_id: str
    window_start: datetime
    window_end: datetime
    schema_version: int
    legacy: bool
    metrics: dict[str, Any]
    active_devices: int | None
    total_devices: int | None
    partial: bool
    missing: list[str]
    unmeasured: list[str]
    coverage: dict[str, Any]
    agent_version: str | None
    fingerprint: str
    created_at: datetime


class CredentialRow(Base):
    """An ingest token or operator API key; only a hash of its secret is stored."""

    __tablename__ = "credentials"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    role: Mapped[str | None] = mapped_column(String(16), nullable=True)
    customer_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    secret_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)

    __table_args__ = (Index("ix_credentials_kind_customer", "kind", "customer_id"),)


def _table(row: type[Base]) -> Table:
    table: Table = row.__table__  # type: ignore[assignment]
    return table


FORWARDS = _table(ForwardRow)
BATCHES = _table(BatchRow)
STATE = _table(MeterStateRow)
PERIODS = _table(BillingPeriodRow)
LINKS = _table(CustomerLinkRow)
ITEMS = _table(SubscriptionItemRow)
EVENTS = _table(WebhookEventRow)
AUDIT = _table(AuditRow)
REPORTS = _table(ReportRow)
PERIOD_INDEXED = FORWARDS.c.period_id.is_not(None)
"""The rows the outbox's period index holds: a query on periods states it, or SQLite cannot
use the index."""
Index(
    "ix_forwards_period",
    FORWARDS.c.period_id,
    FORWARDS.c.metric,
    FORWARDS.c.instance_id,
    FORWARDS.c.window_end,
    sqlite_where=PERIOD_INDEXED,
    postgresql_where=PERIOD_INDEXED,
)
CREDENTIALS = _table(CredentialRow)
RECONCILE_RESULTS = _table(ReconcileResultRow)
