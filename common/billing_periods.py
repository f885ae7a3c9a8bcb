"""Billing period bounds the collector tells an agent, so windows never straddle a boundary.

The collector's answer to a report carries ``billing_periods``: the customer's known periods
(start inclusive, end exclusive, UTC), oldest first. An agent cuts a window that contains a
boundary strictly inside it into two windows, and never compacts across a boundary.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError, model_validator


class PeriodBounds(BaseModel):
    """One billing period: ``[start, end)`` in UTC."""

    model_config = ConfigDict(frozen=True)

    start: AwareDatetime
    end: AwareDatetime

    @model_validator(mode="after")
    def _ordered(self) -> PeriodBounds:
        if self.end <= self.start:
            raise ValueError("a billing period must end after it starts")
        return self


def boundaries(periods: Iterable[PeriodBounds]) -> list[datetime]:
    """Every distinct start and end, ascending."""
    return sorted({moment for p in periods for moment in (p.start, p.end)})


def parse_periods(body: Any) -> list[PeriodBounds]:
    """The ``billing_periods`` of a collector answer; none when absent or malformed."""
    if not isinstance(body, dict):
        return []
    raw = body.get("billing_periods")
    if not isinstance(raw, list):
        return []
    periods: list[PeriodBounds] = []
    for item in raw:
        try:
            periods.append(PeriodBounds.model_validate(item))
        except ValidationError:
            continue
    return sorted(periods, key=lambda p: p.start)


def cut_points(start: datetime, end: datetime, known: Sequence[datetime]) -> list[datetime]:
    """Boundaries strictly inside the window ``(start, end]``, ascending."""
    return [b for b in known if start < b < end]
