"""Durations, interval-aligned time windows and calendar billing months, all in UTC."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_duration(value: str | int | float | timedelta) -> timedelta:
    """Parse ``1h``, ``30m``, ``1h30m``, ``90s`` or a bare number of milliseconds (the seed)."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        return timedelta(milliseconds=value)
    text = value.strip().lower()
    if not text:
        raise ValueError("empty duration")
    if text.isdigit():
        return timedelta(milliseconds=int(text))
    pos = 0
    seconds = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text):
        raise ValueError(
            f"not a duration: {value!r} (use a number of milliseconds, or e.g. 1h, 30m, 90s, 1h30m)"
        )
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Render a duration compactly, e.g. ``1h30m`` or ``45s``."""
    total = value.total_seconds()
    if total <= 0:
        return "0s"
    days, rest = divmod(int(total), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")) if n]
    millis = round((total - int(total)) * 1000)
    if millis:
        parts.append(f"{millis}ms")
    return "".join(parts)


def as_utc(moment: datetime) -> datetime:
    """Return ``moment`` in UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


@dataclass(frozen=True, order=True)
class Window:
    """A half-open time interval ``(start, end]`` in UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"window end {self.end} is not after its start {self.start}")

    @property
    def length(self) -> timedelta:
        return self.end - self.start

    def __str__(self) -> str:
        return f"{self.start.isoformat()}..{self.end.isoformat()}"


def _check_interval(interval: timedelta) -> None:
    if interval <= timedelta(0):
        raise ValueError(f"interval must be positive, got {interval}")


def window_containing(moment: datetime, interval: timedelta) -> Window:
    """The interval-aligned window that ``moment`` falls in (a boundary starts a window)."""
    _check_interval(interval)
    offset = (as_utc(moment) - EPOCH) // interval
    start = EPOCH + offset * interval
    return Window(start, start + interval)


def last_complete_window(now: datetime, interval: timedelta) -> Window:
    """The newest aligned window that ended at or before ``now``."""
    current = window_containing(now, interval)
    return Window(current.start - interval, current.start)


def windows_between(after: datetime, until: datetime, interval: timedelta) -> list[Window]:
    """Every aligned window ending in ``(after, until]``, oldest first."""
    _check_interval(interval)
    end = window_containing(after, interval).end
    result = []
    while end <= as_utc(until):
        result.append(Window(end - interval, end))
        end += interval
    return result


def month_start(moment: datetime) -> datetime:
    """The first instant of the UTC calendar month of ``moment``."""
    utc = as_utc(moment)
    return datetime(utc.year, utc.month, 1, tzinfo=UTC)


def next_month_start(moment: datetime) -> datetime:
    """The first instant of the UTC calendar month after ``moment``'s."""
    utc = as_utc(moment)
    if utc.month == 12:
        return datetime(utc.year + 1, 1, 1, tzinfo=UTC)
    return datetime(utc.year, utc.month + 1, 1, tzinfo=UTC)


def calendar_month(moment: datetime) -> Window:
    """The UTC calendar month containing ``moment``, as a window."""
    return Window(month_start(moment), next_month_start(moment))
