"""The usage chart: every window drawn once, in its place, partial and unmeasured marked.

Round trip: the SVG is parsed back and each block's instance, window and state must be the
window it was drawn from; a window that measured nothing is never a bar of 0.
"""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from collector.api.console.usage_chart import (
    LANE,
    LEFT,
    MEASURED,
    PARTIAL,
    RIGHT,
    SVG_NS,
    UNMEASURED,
    WIDTH,
    ChartWindow,
    chart_windows,
    render,
    ticks,
)

START = datetime(2026, 3, 1, tzinfo=UTC)
NS = {"svg": SVG_NS}


@dataclass
class Stored:
    instance_id: str
    window_start: datetime
    window_end: datetime
    metrics: dict[str, Any]
    missing: list[str] = field(default_factory=list)
    unmeasured: list[str] = field(default_factory=list)


@st.composite
def windows(draw: st.DrawFn) -> list[ChartWindow]:
    instances = draw(st.lists(st.sampled_from(["a", "b-2", "c<&>"]), min_size=1, unique=True))
    made = []
    for instance in instances:
        offset = draw(st.integers(0, 48))
        for index in range(draw(st.integers(1, 30))):
            begin = START + timedelta(hours=offset + index)
            state = draw(st.sampled_from([MEASURED, MEASURED, PARTIAL, UNMEASURED]))
            value = (
                Decimal(draw(st.integers(0, 10**9))) / draw(st.sampled_from([1, 10, 100]))
                if state == MEASURED
                else None
            )
            made.append(ChartWindow(instance, begin, begin + timedelta(hours=1), state, value))
    return made


def blocks(svg: str) -> list[ET.Element]:
    return ET.fromstring(svg).findall(".//svg:rect[@data-state]", NS)


@given(windows())
def test_every_window_is_drawn_once_with_its_state(drawn: list[ChartWindow]) -> None:
    svg = render("mqtt_messages", drawn)
    found = sorted(
        (
            b.get("data-instance"),
            b.get("data-start"),
            b.get("data-end"),
            b.get("data-state"),
            b.get("class"),
        )
        for b in blocks(svg)
    )
    expected = sorted(
        (w.instance_id, w.start.isoformat(), w.end.isoformat(), w.state, f"window {w.state}")
        for w in drawn
    )
    assert found == expected


@given(windows())
def test_blocks_stay_inside_the_plot_and_follow_time(drawn: list[ChartWindow]) -> None:
    rendered = blocks(render("devices", drawn))
    for block in rendered:
        x, width = float(block.get("x", "0")), float(block.get("width", "0"))
        height = float(block.get("height", "0"))
        assert x >= LEFT - 0.01
        assert x + width <= WIDTH - RIGHT + 0.01
        assert 0 < height <= LANE + 0.01
    for lane in {b.get("data-instance") for b in rendered}:
        mine = [b for b in rendered if b.get("data-instance") == lane]
        by_time = sorted(mine, key=lambda b: b.get("data-start") or "")
        xs = [float(b.get("x", "0")) for b in by_time]
        assert xs == sorted(xs)


@given(windows())
def test_what_was_not_measured_is_hatched_full_height_never_a_zero_bar(
    drawn: list[ChartWindow],
) -> None:
    for block in blocks(render("storage_gb", drawn)):
        state = block.get("data-state")
        if state == MEASURED:
            assert block.get("fill") is None
            assert block.get("data-value") is not None
        else:
            assert block.get("fill") == f"url(#hatch-{state}-storage_gb)"
            assert float(block.get("height", "0")) == LANE
            assert block.get("data-value") is None
        title = block.find("svg:title", NS)
        assert title is not None
        assert ("not measured" in (title.text or "")) == (state != MEASURED)


def test_bars_scale_to_the_peak_and_a_measured_zero_is_a_hairline() -> None:
    hour = timedelta(hours=1)
    drawn = [
        ChartWindow("a", START, START + hour, MEASURED, Decimal(0)),
        ChartWindow("a", START + hour, START + 2 * hour, MEASURED, Decimal(50)),
        ChartWindow("a", START + 2 * hour, START + 3 * hour, MEASURED, Decimal(100)),
    ]
    heights = [float(b.get("height", "0")) for b in blocks(render("devices", drawn))]
    assert heights == [1.0, LANE / 2, LANE]


def test_stored_reports_become_windows_by_what_they_say_of_the_metric() -> None:
    hour = timedelta(hours=1)
    stored = [
        Stored("a", START, START + hour, {"storage_gb": 2.5}),
        Stored("a", START + hour, START + 2 * hour, {}, missing=["storage_gb"]),
        Stored("a", START + 2 * hour, START + 3 * hour, {}, unmeasured=["storage_gb"]),
        Stored("a", START + 3 * hour, START + 4 * hour, {"devices": 3}),
    ]
    found = chart_windows(stored, "storage_gb")
    assert [(w.state, w.value) for w in found] == [
        (MEASURED, Decimal("2.5")),
        (PARTIAL, None),
        (UNMEASURED, None),
    ]
    assert chart_windows(stored, "api_requests") == []
    assert render("api_requests", []) == ""


def test_names_are_escaped_not_markup() -> None:
    hour = timedelta(hours=1)
    svg = render("devices", [ChartWindow("<script>", START, START + hour, MEASURED, Decimal(1))])
    assert "<script>" not in svg
    assert blocks(svg)[0].get("data-instance") == "<script>"


def test_the_time_axis_can_widen_but_never_cuts_a_window() -> None:
    hour = timedelta(hours=1)
    drawn = [ChartWindow("a", START, START + hour, MEASURED, Decimal(1))]
    (narrow,) = blocks(render("devices", drawn, start=START + 30 * hour, end=START))
    assert float(narrow.get("x", "0")) == LEFT
    (wide,) = blocks(render("devices", drawn, start=START - 23 * hour, end=START + hour))
    assert float(wide.get("width", "0")) < (WIDTH - LEFT - RIGHT) / 20


@given(
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)),
    st.integers(60, 90 * 86400),
)
def test_ticks_are_round_inside_the_range_and_few(begin: datetime, seconds: int) -> None:
    first = begin.replace(tzinfo=UTC)
    last = first + timedelta(seconds=seconds)
    found = ticks(first, last)
    assert len(found) <= 8
    assert all(first <= t <= last for t in found)
    assert all(t.minute == 0 and t.second == 0 and t.microsecond == 0 for t in found)
    steps = {b - a for a, b in itertools.pairwise(found)}
    assert len(steps) <= 1
