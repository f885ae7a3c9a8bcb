"""Usage over time as a server-rendered SVG: one lane per instance, one block per window.

Every window that concerns the metric is drawn, measured or not. A measured value is a bar (a
measured 0 a hairline on the lane's base line). A window whose report left the metric out
because a source failed is a full-height hatched block marked ``partial``; one whose source held
no sample is a grey hatched block marked ``unmeasured``. Neither is ever drawn as a 0. Each
block names its instance, window and state in ``data-`` attributes and a ``<title>`` tooltip,
so the chart reads the same to a person, a screen reader and a test. No script is involved.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

MEASURED = "measured"
PARTIAL = "partial"
UNMEASURED = "unmeasured"
STATES = (MEASURED, PARTIAL, UNMEASURED)
SVG_NS = "http://www.w3.org/2000/svg"

WIDTH = 960.0
LEFT = 56.0
RIGHT = 12.0
LANE = 56.0
LABEL = 20.0
AXIS = 24.0
MAX_TICKS = 8
HAIRLINE = 1.0
NARROWEST = 0.75


class StoredWindow(Protocol):
    """What the chart reads of a stored report."""

    instance_id: str
    window_start: datetime
    window_end: datetime
    metrics: Mapping[str, Any]
    missing: Sequence[str]
    unmeasured: Sequence[str]


@dataclass(frozen=True)
class ChartWindow:
    instance_id: str
    start: datetime
    end: datetime
    state: str
    value: Decimal | None = None


def chart_windows(reports: Iterable[StoredWindow], metric: str) -> list[ChartWindow]:
    """The windows that concern ``metric``: those that measured it, or say why they did not."""
    found = []
    for report in reports:
        value = report.metrics.get(metric)
        if value is not None:
            window = ChartWindow(
                report.instance_id,
                report.window_start,
                report.window_end,
                MEASURED,
                Decimal(str(value)),
            )
        elif metric in report.missing:
            window = ChartWindow(
                report.instance_id, report.window_start, report.window_end, PARTIAL
            )
        elif metric in report.unmeasured:
            window = ChartWindow(
                report.instance_id, report.window_start, report.window_end, UNMEASURED
            )
        else:
            continue
        found.append(window)
    return found


def number(value: Decimal) -> str:
    """``1,234`` or ``2.5``: never an exponent."""
    if value == value.to_integral_value():
        return f"{int(value):,}"
    return f"{value.normalize():,f}"


def _time(moment: datetime, span_seconds: float) -> str:
    if span_seconds <= 86400:
        return moment.strftime("%H:%M")
    return moment.strftime("%m-%d %H:%M" if moment.hour else "%m-%d")


def _describe(window: ChartWindow) -> str:
    end_format = "%H:%M" if window.start.date() == window.end.date() else "%Y-%m-%d %H:%M"
    span = f"{window.start:%Y-%m-%d %H:%M} to {window.end.strftime(end_format)} UTC"
    if window.state == MEASURED and window.value is not None:
        what = number(window.value)
    elif window.state == PARTIAL:
        what = "not measured: a source failed (partial report)"
    else:
        what = "not measured: no sample in the window"
    return f"{window.instance_id}, {span}: {what}"


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "-", name.lower())


def _hatch(defs: ET.Element, pattern_id: str, css_class: str, colour: str) -> None:
    pattern = ET.SubElement(
        defs,
        "pattern",
        id=pattern_id,
        width="6",
        height="6",
        patternUnits="userSpaceOnUse",
        patternTransform="rotate(45)",
    )
    pattern.set("class", css_class)
    ET.SubElement(pattern, "rect", width="6", height="6", fill=colour, opacity="0.25")
    ET.SubElement(pattern, "line", x1="0", y1="0", x2="0", y2="6", stroke=colour)
    pattern[-1].set("stroke-width", "3")


def render(
    metric: str,
    windows: Sequence[ChartWindow],
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> str:
    """The SVG for one metric's windows (empty without windows). ``start`` and ``end`` widen the
    time axis, so the charts of one page line up; they never cut a window off."""
    if not windows:
        return ""
    lanes = sorted({w.instance_id for w in windows})
    first = min([w.start for w in windows] + ([start] if start else []))
    last = max([w.end for w in windows] + ([end] if end else []))
    span = max((last - first).total_seconds(), 1.0)
    peak = max((w.value for w in windows if w.value is not None), default=Decimal(0))
    top_value = peak if peak > 0 else Decimal(1)
    plot = WIDTH - LEFT - RIGHT
    height = len(lanes) * (LANE + LABEL) + AXIS

    def x(moment: datetime) -> float:
        return LEFT + (moment - first).total_seconds() / span * plot

    slug = _slug(metric)
    svg = ET.Element("svg", xmlns=SVG_NS, viewBox=f"0 0 {WIDTH:g} {height:g}", role="img")
    svg.set("class", "usage-chart")
    svg.set("data-metric", metric)
    svg.set("aria-label", f"{metric}: {len(windows)} windows of {len(lanes)} instance(s)")
    defs = ET.SubElement(svg, "defs")
    _hatch(defs, f"hatch-{PARTIAL}-{slug}", PARTIAL, "#b45309")
    _hatch(defs, f"hatch-{UNMEASURED}-{slug}", UNMEASURED, "#6b7280")
    for index, instance in enumerate(lanes):
        top = index * (LANE + LABEL) + LABEL
        base = top + LANE
        lane = ET.SubElement(svg, "g")
        lane.set("class", "lane")
        lane.set("data-instance", instance)
        _text(lane, LEFT, top - 6, instance, "lane-label")
        _text(lane, LEFT - 6, top + 10, number(top_value), "axis-label", "end")
        _text(lane, LEFT - 6, base, "0", "axis-label", "end")
        baseline = ET.SubElement(
            lane, "line", x1=f"{LEFT:g}", x2=f"{WIDTH - RIGHT:g}", y1=f"{base:g}", y2=f"{base:g}"
        )
        baseline.set("class", "baseline")
        for window in (w for w in windows if w.instance_id == instance):
            _block(lane, window, x, top, top_value, slug)
    _time_axis(svg, first, last, height, x)
    return ET.tostring(svg, encoding="unicode")


def _text(
    parent: ET.Element, x: float, y: float, text: str, css_class: str, anchor: str = "start"
) -> None:
    element = ET.SubElement(parent, "text", x=f"{x:.2f}", y=f"{y:g}")
    element.set("class", css_class)
    if anchor != "start":
        element.set("text-anchor", anchor)
    element.text = text


def _block(
    lane: ET.Element,
    window: ChartWindow,
    x: Callable[[datetime], float],
    top: float,
    top_value: Decimal,
    slug: str,
) -> None:
    """One window: a bar scaled to the lane's peak, or a hatched full-height block."""
    left, right = x(window.start), x(window.end)
    gap = min(1.0, 0.15 * (right - left))
    width = max(right - left - gap, NARROWEST)
    fill = None
    if window.state == MEASURED and window.value is not None:
        bar = float(window.value / top_value) * LANE if window.value > 0 else 0.0
        bar = max(bar, HAIRLINE)
        y = top + LANE - bar
    else:
        y, bar, fill = top, LANE, f"url(#hatch-{window.state}-{slug})"
    block = ET.SubElement(
        lane, "rect", x=f"{left:.2f}", y=f"{y:.2f}", width=f"{width:.2f}", height=f"{bar:.2f}"
    )
    block.set("class", f"window {window.state}")
    if fill is not None:
        block.set("fill", fill)
    block.set("data-instance", window.instance_id)
    block.set("data-start", window.start.isoformat())
    block.set("data-end", window.end.isoformat())
    block.set("data-state", window.state)
    if window.value is not None:
        block.set("data-value", str(window.value))
    ET.SubElement(block, "title").text = _describe(window)


TICK_STEPS = tuple(timedelta(hours=h) for h in (1, 2, 3, 6, 12, 24, 48, 96, 168, 336, 672))


def ticks(first: datetime, last: datetime, most: int = MAX_TICKS) -> list[datetime]:
    """Round times (whole hours, days, weeks, in UTC) inside ``[first, last]``, at most
    ``most`` of them, evenly spaced."""
    span = last - first
    step = next((s for s in TICK_STEPS if span / s <= most), TICK_STEPS[-1])
    epoch = datetime(2000, 1, 3, tzinfo=UTC)  # a Monday: weekly ticks fall on Mondays
    moment = epoch + step * -(-(first - epoch) // step)
    found: list[datetime] = []
    while moment <= last and len(found) < most:
        found.append(moment)
        moment += step
    return found


def _time_axis(
    svg: ET.Element,
    first: datetime,
    last: datetime,
    height: float,
    x: Callable[[datetime], float],
) -> None:
    axis = ET.SubElement(svg, "g")
    axis.set("class", "time-axis")
    span = (last - first).total_seconds()
    for moment in ticks(first, last):
        tick = ET.SubElement(
            axis,
            "line",
            x1=f"{x(moment):.2f}",
            x2=f"{x(moment):.2f}",
            y1=f"{height - AXIS:g}",
            y2=f"{height - AXIS + 4:g}",
        )
        tick.set("class", "baseline")
        anchor = "start" if x(moment) < LEFT + 20 else "end" if x(moment) > WIDTH - 40 else "middle"
        _text(axis, x(moment), height - 8, _time(moment, span), "axis-label", anchor)
