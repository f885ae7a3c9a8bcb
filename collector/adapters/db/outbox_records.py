"""The outbox's records: waiting forwards, delivered state, and what formation decides."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class PendingForward:
    id: int
    report_id: uuid.UUID
    customer_id: str
    metric: str
    window_end: datetime
    value: Decimal


@dataclass(frozen=True)
class MeterState:
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


Decide = Callable[
    [list[PendingForward], list[tuple[datetime, datetime]], Callable[[datetime], MeterState]],
    Formation | None,
]


def state_from_row(row: Any) -> MeterState:
    """A ``meter_state`` row as the delivered state."""
    return MeterState(
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
