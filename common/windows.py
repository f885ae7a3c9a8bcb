"""Durations, interval-aligned time windows and calendar billing months, all in UTC."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_text(moment: datetime, timespec: str = "auto") -> str:
    """``moment.isoformat(timespec=timespec)``, remembered for UTC times.

    A fleet's reports share a few window bounds, each written several times per report.
    """
    if moment.tzinfo is UTC:
        return _utc_text(moment, timespec)
    return moment.isoformat(timespec=timespec)


@functools.lru_cache(maxsize=4096)
def _utc_text(moment: datetime, timespec: str) -> str:
    return moment.isoformat(timespec=timespec)


_BARE_UNITS = ("s", "ms")


def parse_duration(value: str | int | float | timedelta, *, bare_unit: str = "s") -> timedelta:
    """Parse ``1h``, ``30m``, ``1h30m``, ``90s``, ``250ms``, ``7d`` or a bare number.

    A bare number is in ``bare_unit``: seconds, except where a setting keeps the seed's
    milliseconds (``COLLECTION_INTERVAL=3600000``) and passes ``bare_unit="ms"``.
    """
    if bare_unit not in _BARE_UNITS:
        raise ValueError(f"bare_unit must be one of {_BARE_UNITS}, got {bare_unit!r}")
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    scale = _UNIT_SECONDS[bare_unit]
    if isinstance(value, int | float):
        return timedelta(seconds=value * scale)
    text = value.strip().lower()
    if not text:
        raise ValueError("empty duration")
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return timedelta(seconds=float(text) * scale) if "." in text else _whole(int(text), scale)
    pos = 0
    seconds = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text):
        bare = "seconds" if bare_unit == "s" else "milliseconds"
        raise ValueError(
            f"not a duration: {value!r} (use e.g. 1h, 30m, 90s, 1h30m, 7d, or a number of {bare})"
        )
    return timedelta(seconds=seconds)


def _whole(number: int, scale: float) -> timedelta:
    return timedelta(milliseconds=number) if scale < 1 else timedelta(seconds=number)


def format_duration(value: timedelta) -> str:
    """Render a duration the way ``parse_duration`` reads it back exactly: ``1h``, ``30s``, ``7d``.

    Whole days, hours, minutes and seconds, then milliseconds; anything finer than a millisecond
    is rendered in seconds with a fraction. A negative duration is refused: no setting takes one.
    """
    if value < timedelta(0):
        raise ValueError(f"cannot format a negative duration: {value}")
    if value == timedelta(0):
        return "0s"
    if value.microseconds % 1000:
        return f"{value.total_seconds():f}".rstrip("0").rstrip(".") + "s"
    total_ms = value // timedelta(milliseconds=1)
    rest, millis = divmod(total_ms, 1000)
    days, rest = divmod(rest, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    units = ((days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s"), (millis, "ms"))
    return "".join(f"{n}{u}" for n, u in units if n)


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
