"""Billing semantics and the arithmetic that folds window values under each of them.

``increment`` values are per-window deltas and add up; ``set`` keeps the newest value;
``max`` keeps the peak. Folding is associative, so windows can be compacted in any grouping
as long as their order is kept.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from decimal import Decimal


class Semantics(enum.StrEnum):
    """How the collector turns a sequence of window values into a billed quantity."""

    SET = "set"
    INCREMENT = "increment"
    MAX = "max"


class MetricKind(enum.StrEnum):
    """What the source series is: a gauge reads a level, a counter only grows (until reset)."""

    GAUGE = "gauge"
    COUNTER = "counter"


def to_decimal(value: float | int | Decimal) -> Decimal:
    """An exact decimal for a value, from its shortest repr rather than its binary expansion."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    return Decimal(repr(value))


def fold(semantics: Semantics, values: Iterable[float | int | Decimal]) -> Decimal | None:
    """Fold window values, oldest first, into one value; ``None`` when there are none."""
    result: Decimal | None = None
    for raw in values:
        value = to_decimal(raw)
        if result is None:
            result = value
        elif semantics is Semantics.INCREMENT:
            result += value
        elif semantics is Semantics.SET:
            result = value
        else:
            result = max(result, value)
    return result


def fold_pair(semantics: Semantics, older: Decimal | None, newer: Decimal | None) -> Decimal | None:
    """Fold two already-folded values; either may be absent."""
    if older is None:
        return newer
    if newer is None:
        return older
    return fold(semantics, (older, newer))
