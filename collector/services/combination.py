"""Combining the instances of one customer into what Stripe bills for a period.

A customer may run several instances (``acme-prod``, ``acme-staging``), each reporting its own
windows. Pure arithmetic, no I/O:

- ``set``: the sum over instances of each instance's newest value in the period. An instance
  that has not reported in the period contributes nothing; a retired instance's newest value is
  a zero written at retirement.
- ``max``: the peak over time of the sum across instances. Each instance's value holds over its
  window ``(start, end]``; where an instance's windows overlap, its larger value holds. Instances
  reporting at different intervals combine exactly, since the sum is taken at every instant.
- ``increment``: the sum of every window.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from common.semantics import Semantics


@dataclass(frozen=True)
class InstanceWindow:
    """One window's value of one metric of one instance; ``order`` breaks equal window ends."""

    instance_id: str
    start: datetime
    end: datetime
    value: Decimal
    order: int = 0


def newest_by_instance(windows: Iterable[InstanceWindow]) -> dict[str, InstanceWindow]:
    """Each instance's newest window (latest end, then highest ``order``)."""
    newest: dict[str, InstanceWindow] = {}
    for window in windows:
        held = newest.get(window.instance_id)
        if held is None or (window.end, window.order) > (held.end, held.order):
            newest[window.instance_id] = window
    return newest


def combined_set(windows: Iterable[InstanceWindow]) -> Decimal:
    """The sum of each instance's newest value."""
    return sum((w.value for w in newest_by_instance(windows).values()), Decimal(0))


def peak_of_sums(
    windows: Sequence[InstanceWindow], within: Sequence[tuple[datetime, datetime]] | None = None
) -> Decimal | None:
    """The largest sum across instances at any instant, optionally only over ``within`` spans.

    ``None`` when no window covers any instant considered.
    """
    if not windows:
        return None
    by_start = sorted(windows, key=lambda w: w.start)
    cuts = sorted({w.start for w in windows} | {w.end for w in windows})
    active: list[InstanceWindow] = []
    next_start = 0
    peak: Decimal | None = None
    for left, right in itertools.pairwise(cuts):
        while next_start < len(by_start) and by_start[next_start].start <= left:
            active.append(by_start[next_start])
            next_start += 1
        active = [w for w in active if w.end >= right]
        if within is not None and not any(lo < right and left < hi for lo, hi in within):
            continue
        per_instance: dict[str, Decimal] = {}
        for w in active:
            held = per_instance.get(w.instance_id)
            per_instance[w.instance_id] = w.value if held is None else max(held, w.value)
        if per_instance:
            total = sum(per_instance.values(), Decimal(0))
            peak = total if peak is None else max(peak, total)
    return peak


def combine(semantics: Semantics, windows: Sequence[InstanceWindow]) -> Decimal | None:
    """What a period's windows bill before rounding; ``None`` when there are none."""
    if not windows:
        return None
    if semantics is Semantics.INCREMENT:
        return sum((w.value for w in windows), Decimal(0))
    if semantics is Semantics.SET:
        return combined_set(windows)
    return peak_of_sums(windows)
