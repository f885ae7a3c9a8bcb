"""Exact counter arithmetic: the increase of counter series over a window, from raw samples.

A counter only grows, except when its process restarts and it starts again from zero. So the
increase between two consecutive samples is their difference, or, when the value dropped, the new
value itself (everything counted since the reset). A series with no earlier sample counts from 0.
Nothing is extrapolated: the result is exactly what was scraped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

ZERO = Decimal(0)


def step_increase(previous: Decimal | None, current: Decimal) -> Decimal:
    """The increase from one sample to the next; a drop is a reset, ``None`` means a new series."""
    if previous is None or current < previous:
        return current
    return current - previous


def series_increase(baseline: Decimal | None, values: Sequence[Decimal]) -> Decimal:
    """The increase of one series over its samples in the window, after its baseline."""
    total = ZERO
    previous = baseline
    for value in values:
        total += step_increase(previous, value)
        previous = value
    return total


def window_increase[K](
    baselines: Mapping[K, Decimal], samples: Mapping[K, Sequence[Decimal]]
) -> Decimal:
    """The summed increase of every series; a series with only a baseline adds nothing."""
    return sum(
        (series_increase(baselines.get(key), values) for key, values in samples.items()),
        start=ZERO,
    )


def as_report_number(value: Decimal) -> int | float:
    """A whole number stays an ``int`` so large counts keep every digit; others become floats."""
    if value == value.to_integral_value():
        return int(value)
    return float(value)
