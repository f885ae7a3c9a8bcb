"""The peak of a gauge sum over a window, from every raw sample: no grid can step over a sample.

Each series holds its value from one sample until its next sample, as Prometheus evaluates it,
and never for longer than Prometheus' 5-minute lookback delta. After its last sample a series
holds for at most its own median sample spacing (the scrape interval when it has fewer than two
samples): a series that stopped is gone one scrape later, not five minutes later. The sum only
rises at a sample instant, since a series that stops holding takes a value of zero or more away
(gauges of bytes are never negative), so the window's peak is the highest sum just after the
window starts or at any sample instant inside ``(start, end]``. The arithmetic is in Decimal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from itertools import pairwise
from statistics import median_low

LOOKBACK_DELTA = timedelta(minutes=5)
LOOKBACK_DELTA_MS = LOOKBACK_DELTA // timedelta(milliseconds=1)

Sample = tuple[int, Decimal]
"""A sample's timestamp in whole milliseconds since the epoch, and its value."""


@dataclass(frozen=True)
class WindowPeak:
    """The peak of the held sum in a window (``None``: no series held a value in it) and coverage.

    ``samples`` were read inside the window, where the series' spacing implies ``expected``;
    ``series`` is how many series held a value somewhere in the window.
    """

    peak: Decimal | None
    samples: int
    expected: int
    series: int


def spacing_ms(times: Sequence[int], default_ms: int) -> int:
    """A series' median sample spacing, or ``default_ms`` when it has fewer than two samples."""
    gaps = [later - earlier for earlier, later in pairwise(times) if later > earlier]
    return median_low(gaps) if gaps else default_ms


def expected_samples(length_ms: int, spacing: int) -> int:
    """How many samples one series sampled every ``spacing`` ms has in a window, whatever phase."""
    return length_ms // spacing


def holds(samples: Sequence[Sample], default_spacing_ms: int) -> list[tuple[int, int, Decimal]]:
    """Each sample's value with the half-open interval ``[from, until)`` it holds over."""
    after_last = min(spacing_ms([t for t, _ in samples], default_spacing_ms), LOOKBACK_DELTA_MS)
    intervals = []
    for index, (at, value) in enumerate(samples):
        if index + 1 < len(samples):
            until = min(samples[index + 1][0], at + LOOKBACK_DELTA_MS)
        else:
            until = at + after_last
        intervals.append((at, until, value))
    return intervals


def window_peak[K](
    series: Mapping[K, Sequence[Sample]], start_ms: int, end_ms: int, scrape_interval_ms: int
) -> WindowPeak:
    """The highest held sum of ``series`` in ``(start, end]``; samples are oldest first.

    The samples should reach back one lookback delta before ``start``, so that a value held
    into the window is known.
    """
    changes: list[tuple[int, Decimal, int]] = []
    instants = {start_ms}
    inside = expected = seen = 0
    for samples in series.values():
        held = [h for h in holds(samples, scrape_interval_ms) if h[1] > start_ms and h[0] <= end_ms]
        if not held:
            continue
        seen += 1
        times = [t for t, _ in samples]
        expected += expected_samples(end_ms - start_ms, spacing_ms(times, scrape_interval_ms))
        for at, until, value in held:
            changes.append((at, value, 1))
            changes.append((until, -value, -1))
            if at > start_ms:
                instants.add(at)
                inside += 1
    changes.sort(key=lambda change: change[0])
    peak: Decimal | None = None
    total, holding, applied = Decimal(0), 0, 0
    for instant in sorted(instants):
        while applied < len(changes) and changes[applied][0] <= instant:
            _, amount, count = changes[applied]
            total += amount
            holding += count
            applied += 1
        if holding and (peak is None or total > peak):
            peak = total
    return WindowPeak(peak=peak, samples=inside, expected=expected, series=seen)
