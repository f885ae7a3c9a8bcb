from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.windows import (
    calendar_month,
    format_duration,
    last_complete_window,
    parse_duration,
    utc_text,
    window_containing,
    windows_between,
)

moments = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
)
intervals = st.sampled_from([timedelta(seconds=s) for s in (5, 60, 300, 900, 1800, 3600, 86400)])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3600", timedelta(hours=1)),
        ("1h", timedelta(hours=1)),
        ("30m", timedelta(minutes=30)),
        ("1h30m", timedelta(minutes=90)),
        ("90s", timedelta(seconds=90)),
        ("250ms", timedelta(milliseconds=250)),
        ("1d", timedelta(days=1)),
        ("1.5", timedelta(milliseconds=1500)),
        (1800, timedelta(minutes=30)),
    ],
)
def test_parse_duration_reads_bare_numbers_as_seconds_and_units(text, expected) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("3600000", timedelta(hours=1)), (1800000, timedelta(minutes=30)), ("1h", timedelta(hours=1))],
)
def test_parse_duration_reads_the_seeds_bare_milliseconds_when_asked(text, expected) -> None:
    assert parse_duration(text, bare_unit="ms") == expected


@pytest.mark.parametrize("text", ["abc", "", "1x", "h1", "-5m", "1h abc", "1:00:00"])
def test_parse_duration_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(hours=1), "1h"),
        (timedelta(seconds=30), "30s"),
        (timedelta(days=7), "7d"),
        (timedelta(minutes=90), "1h30m"),
        (timedelta(milliseconds=250), "250ms"),
        (timedelta(0), "0s"),
    ],
)
def test_format_duration_prints_what_settings_accept(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400)))
def test_format_duration_round_trips(value: timedelta) -> None:
    assert parse_duration(format_duration(value)) == value
    assert parse_duration(format_duration(value), bare_unit="ms") == value


@given(moments, intervals)
def test_window_containing_is_aligned_and_contains(moment: datetime, interval: timedelta) -> None:
    window = window_containing(moment, interval)
    assert window.start <= moment < window.end
    assert window.length == interval
    assert (window.start - datetime(1970, 1, 1, tzinfo=UTC)) % interval == timedelta(0)


@given(moments, intervals)
def test_last_complete_window_ended_at_or_before_now(now: datetime, interval: timedelta) -> None:
    window = last_complete_window(now, interval)
    assert window.end <= now < window.end + interval


@given(moments, st.integers(0, 200), intervals)
def test_windows_between_tile_the_gap_without_overlap(
    after: datetime, steps: int, interval: timedelta
) -> None:
    until = after + steps * interval
    windows = windows_between(after, until, interval)
    assert all(a.end == b.start for a, b in itertools.pairwise(windows))
    assert all(after < w.end <= until for w in windows)
    assert len(windows) in (steps, steps - 1) if steps else windows == []


def test_calendar_month_handles_december() -> None:
    month = calendar_month(datetime(2026, 12, 31, 23, 59, tzinfo=UTC))
    assert (month.start, month.end) == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )


@given(
    moment=st.datetimes(
        timezones=st.sampled_from([UTC, ZoneInfo("UTC"), timezone(timedelta(hours=2)), None])
    ),
    timespec=st.sampled_from(["auto", "microseconds", "seconds"]),
)
def test_utc_text_is_isoformat_whichever_equal_time_came_first(
    moment: datetime, timespec: str
) -> None:
    for earlier in (moment.astimezone(UTC) if moment.tzinfo else moment, moment):
        utc_text(earlier, timespec)
    assert utc_text(moment, timespec) == moment.isoformat(timespec=timespec)
