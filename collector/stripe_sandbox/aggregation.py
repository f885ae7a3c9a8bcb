"""How meters and legacy usage records turn received usage into a billed quantity."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

FORMULAS = ("sum", "count", "last")
LEGACY_AGGREGATIONS = ("sum", "last_during_period", "last_ever", "max")
WINDOW_SECONDS = {"hour": 3600, "day": 86400}


@dataclass(frozen=True)
class MeterEventRecord:
    """One accepted meter event, as the meter aggregates it."""

    seq: int
    identifier: str
    event_name: str
    meter_id: str
    customer: str
    value: int
    timestamp: int
    received_at: int
    source: str


def aggregate(formula: str, events: Iterable[MeterEventRecord]) -> int:
    """The meter's value over ``events``; ``last`` takes the latest timestamp, then arrival."""
    chosen = list(events)
    if formula == "count":
        return len(chosen)
    if formula == "sum":
        return sum(event.value for event in chosen)
    if formula == "last":
        if not chosen:
            return 0
        return max(chosen, key=lambda event: (event.timestamp, event.seq)).value
    raise ValueError(f"unknown formula {formula!r}")


def in_range(
    events: Iterable[MeterEventRecord], *, customer: str, start: int, end: int
) -> list[MeterEventRecord]:
    """Events of one customer with ``start <= timestamp < end``."""
    return [e for e in events if e.customer == customer and start <= e.timestamp < end]


def summaries(
    formula: str,
    events: Iterable[MeterEventRecord],
    *,
    start: int,
    end: int,
    window: str | None,
) -> list[tuple[int, int, int]]:
    """``(start, end, value)`` per grouping window; without a window, one span for the range.

    With a window, only windows holding events are listed, oldest first.
    """
    chosen = [e for e in events if start <= e.timestamp < end]
    if window is None:
        return [(start, end, aggregate(formula, chosen))]
    width = WINDOW_SECONDS[window]
    buckets: dict[int, list[MeterEventRecord]] = {}
    for event in chosen:
        bucket = start + (event.timestamp - start) // width * width
        buckets.setdefault(bucket, []).append(event)
    return [
        (bucket, min(bucket + width, end), aggregate(formula, buckets[bucket]))
        for bucket in sorted(buckets)
    ]


def legacy_total(aggregate_usage: str, quantities: Mapping[int, int], start: int, end: int) -> int:
    """A legacy metered price's usage over ``[start, end)`` from per-timestamp quantities.

    ``quantities`` holds one value per exact timestamp: ``increment`` adds to it and ``set``
    replaces it, which is why ``sum`` over hourly ``set`` calls adds every hour's value.
    """
    in_period = {ts: qty for ts, qty in quantities.items() if start <= ts < end}
    if aggregate_usage == "sum":
        return sum(in_period.values())
    if aggregate_usage == "max":
        return max(in_period.values(), default=0)
    if aggregate_usage == "last_during_period":
        return in_period[max(in_period)] if in_period else 0
    if aggregate_usage == "last_ever":
        before = [ts for ts in quantities if ts < end]
        return quantities[max(before)] if before else 0
    raise ValueError(f"unknown aggregate_usage {aggregate_usage!r}")
