"""The outbox's records: waiting forwards, delivered state, and what formation decides."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol


@dataclass(frozen=True)
class PendingForward:
    id: int
    report_id: uuid.UUID
    customer_id: str
    metric: str
    window_end: datetime
    value: Decimal
    instance_id: str = ""
    window_start: datetime | None = None
    kind: str = "report"
    generation: int = 0


@dataclass(frozen=True)
class PeriodRef:
    """A billing period of the customer's current link; ``id`` is None until it is stored."""

    id: int | None
    customer_id: str
    stripe_customer_id: str
    subscription_id: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Link:
    """A customer's current link to Stripe."""

    customer_id: str
    stripe_customer_id: str
    subscription_id: str | None
    subscription_status: str | None
    subscription_created: datetime | None = None
    checked_at: datetime | None = None
    event_at: datetime | None = None
    generation: int = 0

    @property
    def billing_key(self) -> str | None:
        """What bills the customer: a subscription, calendar months (''), or unknown (None)."""
        if self.subscription_id:
            return self.subscription_id
        return "" if self.subscription_status == "none" else None


def link_of(row: Any) -> Link:
    """A ``stripe_customers`` row as a link."""
    return Link(
        row.customer_id,
        row.stripe_customer_id,
        row.subscription_id,
        row.subscription_status,
        row.subscription_created,
        row.subscription_checked_at,
        row.event_at,
        row.generation,
    )


@dataclass(frozen=True)
class Choice:
    """Which waiting forwards go into which period now; no period means they wait."""

    period: PeriodRef | None
    members: tuple[PendingForward, ...]


@dataclass(frozen=True)
class MetricDelivery:
    """One customer's metric on its way to Stripe: forwards waiting, and the newest delivery."""

    waiting: int = 0
    """Forwards Stripe has not acknowledged (pending or batched)."""
    last_sent_at: datetime | None = None
    """When Stripe last acknowledged a batch of it."""


@dataclass(frozen=True)
class MeterState:
    period_id: int
    customer_id: str
    metric: str
    period_start: datetime
    period_end: datetime
    raw_total: Decimal
    billed_total: int
    last_value: Decimal | None
    newest_window_end: datetime | None
    last_event_timestamp: datetime | None
    calls: int


@dataclass(frozen=True)
class NewBatch:
    customer_id: str
    metric: str
    semantics: str
    mode: str
    period_id: int
    stripe_customer_id: str
    period_start: datetime
    period_end: datetime
    identifier: str
    quantity: int
    raw_value: Decimal
    event_timestamp: datetime
    newest_window_end: datetime
    member_ids: tuple[int, ...]
    created_at: datetime


@dataclass(frozen=True)
class Formation:
    """What batch formation decided: store a batch, or settle members that need no call."""

    batch: NewBatch | None = None
    settled_ids: tuple[int, ...] = ()
    settled_as: str = "sent"
    state: MeterState | None = None
    period_id: int | None = None


class Planner(Protocol):
    """The forwarder's decisions, called by formation inside its transaction."""

    def choose(
        self, members: list[PendingForward], link: Link, periods: list[PeriodRef]
    ) -> Choice: ...

    def plan(
        self,
        choice: Choice,
        period: PeriodRef,
        state: MeterState,
        context: list[PendingForward],
    ) -> Formation | None: ...


def state_from_row(row: Any) -> MeterState:
    """A ``meter_state`` row as the delivered state."""
    return MeterState(
        period_id=row.period_id,
        customer_id=row.customer_id,
        metric=row.metric,
        period_start=row.period_start,
        period_end=row.period_end,
        raw_total=Decimal(row.raw_total),
        billed_total=row.billed_total,
        last_value=Decimal(row.last_value) if row.last_value is not None else None,
        newest_window_end=row.newest_window_end,
        last_event_timestamp=row.last_event_timestamp,
        calls=row.calls,
    )


def empty_state(
    period_id: int, customer_id: str, metric: str, start: datetime, end: datetime
) -> MeterState:
    """Nothing delivered yet in the period."""
    return MeterState(
        period_id, customer_id, metric, start, end, Decimal(0), 0, None, None, None, 0
    )
