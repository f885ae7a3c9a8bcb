"""The storage peak from every raw sample: held values, their sum, and what a grid would miss."""

from __future__ import annotations

import random
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from agent.services.peaks import (
    LOOKBACK_DELTA_MS,
    Sample,
    WindowPeak,
    holds,
    spacing_ms,
    window_peak,
)

SECOND = 1000
GB = Decimal(10**9)
START = 1_700_000_000_000
SCRAPE = 15 * SECOND


def peak_of(series: dict[str, list[Sample]], start: int, end: int) -> WindowPeak:
    return window_peak(series, start, end, SCRAPE)


def held_sum(series: dict[str, list[Sample]], instant: int) -> Decimal | None:
    """The sum at ``instant`` computed naively: every series' hold that contains it."""
    values = [
        value
        for samples in series.values()
        for at, until, value in holds(samples, SCRAPE)
        if at <= instant < until
    ]
    return sum(values, start=Decimal(0)) if values else None


def grid_value(series: dict[str, list[Sample]], instant: int) -> Decimal | None:
    """What Prometheus evaluates at a grid step: each series' last sample in the lookback delta."""
    values = []
    for samples in series.values():
        before = [value for at, value in samples if instant - LOOKBACK_DELTA_MS < at <= instant]
        if before:
            values.append(before[-1])
    return sum(values, start=Decimal(0)) if values else None


values = st.integers(0, 10**13).map(Decimal)
lengths = st.integers(1, 40 * 60 * SECOND)


@st.composite
def any_series(draw, start: int, end: int) -> dict[str, list[Sample]]:
    """Irregular samples of a few series, from one lookback delta before the window to its end."""
    count = draw(st.integers(0, 4))
    result = {}
    for index in range(count):
        times = draw(
            st.lists(st.integers(start - LOOKBACK_DELTA_MS + 1, end), unique=True, max_size=30).map(
                sorted
            )
        )
        result[f"s{index}"] = [(t, draw(values)) for t in times]
    return result


@st.composite
def windows_with_series(draw) -> tuple[int, int, dict[str, list[Sample]]]:
    end = START + draw(lengths)
    return START, end, draw(any_series(START, end))


@st.composite
def scraped_until_the_end(draw) -> tuple[int, int, dict[str, list[Sample]]]:
    """Series scraped at their own interval and phase, some scrapes lost, the last two kept.

    Prometheus sees a series that stopped for the whole lookback delta, where the agent holds it
    for one spacing only; these series do not stop, so the two must agree on every held value.
    """
    end = START + draw(lengths)
    result = {}
    for index in range(draw(st.integers(1, 4))):
        interval = draw(st.integers(1, 120)) * SECOND
        at = START - LOOKBACK_DELTA_MS + 1 + draw(st.integers(0, interval - 1))
        times = []
        while at <= end:
            times.append(at)
            at += interval
        kept = draw(st.lists(st.booleans(), min_size=len(times), max_size=len(times)))
        times = [t for t, keep in zip(times, kept, strict=True) if keep or t >= times[-2]]
        result[f"s{index}"] = [(t, draw(values)) for t in times]
    return START, end, result


@given(windows_with_series())
def test_peak_is_the_highest_naive_sum_at_the_start_and_every_sample_instant(case):
    start, end, series = case
    instants = {start} | {t for samples in series.values() for t, _ in samples if t > start}
    sums = [s for s in (held_sum(series, t) for t in instants) if s is not None]

    assert peak_of(series, start, end).peak == max(sums, default=None)


@given(windows_with_series(), st.lists(st.integers(1, 40 * 60 * SECOND), max_size=20))
def test_no_instant_in_the_window_has_a_higher_sum_than_the_peak(case, offsets):
    start, end, series = case
    peak = peak_of(series, start, end).peak

    for offset in offsets:
        value = held_sum(series, min(start + offset, end))
        assert value is None or (peak is not None and value <= peak)


@given(windows_with_series())
def test_one_series_peaks_at_its_highest_sample_or_the_value_it_held_into_the_window(case):
    start, end, series = case
    samples = next(iter(series.values()), [])
    inside = [value for at, value in samples if start < at <= end]
    baseline = held_sum({"one": samples}, start)

    candidates = inside + ([baseline] if baseline is not None else [])
    assert peak_of({"one": samples}, start, end).peak == max(candidates, default=None)


@given(scraped_until_the_end(), st.integers(1, 300), st.integers(0, 299))
def test_peak_is_never_below_what_a_grid_of_steps_reads(case, step_seconds, phase_seconds):
    start, end, series = case
    step = step_seconds * SECOND
    grid = range(start + (phase_seconds * SECOND) % step + 1, end + 1, step)
    stepped = [v for v in (grid_value(series, g) for g in grid) if v is not None]
    peak = peak_of(series, start, end).peak

    if stepped:
        assert peak is not None
        assert peak >= max(stepped)


@given(windows_with_series(), st.data())
def test_adding_a_series_never_lowers_the_peak(case, data):
    start, end, series = case
    extra = data.draw(any_series(start, end))
    more = series | {f"extra-{key}": samples for key, samples in extra.items()}
    before, after = peak_of(series, start, end).peak, peak_of(more, start, end).peak

    if before is not None:
        assert after is not None
        assert after >= before


@given(windows_with_series(), st.randoms(use_true_random=False))
def test_the_order_of_the_series_does_not_matter(case, shuffler: random.Random):
    start, end, series = case
    keys = list(series)
    shuffler.shuffle(keys)

    assert peak_of({k: series[k] for k in keys}, start, end) == peak_of(series, start, end)


@given(windows_with_series())
def test_samples_counts_every_sample_inside_the_window(case):
    start, end, series = case
    inside = sum(1 for samples in series.values() for at, _ in samples if start < at <= end)

    assert peak_of(series, start, end).samples == inside


def test_an_80_gb_sample_between_two_15s_steps_is_the_peak():
    """The issue's case: scraped every 10 s at 1 GB, one sample of 80 GB; a grid read 1 GB."""
    end = START + 60 * SECOND
    samples = [(START - 290 * SECOND + i * 10 * SECOND, GB) for i in range(36)]
    samples[32] = (samples[32][0], 80 * GB)  # at START + 30 s
    series = {"pvc": samples}

    measured = peak_of(series, START, end)

    assert measured.peak == 80 * GB
    assert measured.samples == 6
    assert measured.expected == 6
    assert measured.series == 1


def test_two_series_peak_at_the_highest_held_sum_not_the_sum_of_their_maxima():
    end = START + 60 * SECOND
    a = [(START + 5 * SECOND, 10 * GB), (START + 20 * SECOND, 1 * GB), (START + 35 * SECOND, GB)]
    b = [(START + 10 * SECOND, 1 * GB), (START + 25 * SECOND, 10 * GB), (START + 40 * SECOND, GB)]

    assert peak_of({"a": a, "b": b}, START, end).peak == 11 * GB


def test_a_series_that_stopped_holds_one_median_spacing_not_the_lookback_delta():
    samples = [(START - 40 * SECOND, 3 * GB), (START - 20 * SECOND, 5 * GB)]

    assert spacing_ms([t for t, _ in samples], SCRAPE) == 20 * SECOND
    assert peak_of({"gone": samples}, START, START + 60 * SECOND).peak is None
    assert peak_of({"gone": samples}, START - 5 * SECOND, START).peak == 5 * GB


def test_a_value_is_never_held_beyond_the_lookback_delta():
    samples = [(START - 400 * SECOND, 9 * GB), (START + 100 * SECOND, GB)]

    # Held from START - 400 s until START - 100 s only, although the next sample is later.
    assert peak_of({"slow": samples}, START, START + 200 * SECOND).peak == GB


def test_a_window_without_any_value_has_no_peak():
    measured = peak_of({}, START, START + 60 * SECOND)

    assert measured == WindowPeak(peak=None, samples=0, expected=0, series=0)
