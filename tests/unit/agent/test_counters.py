"""Exact counter arithmetic: resets, new series and windows that add up without double counting."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from agent.services.counters import (
    as_report_number,
    series_increase,
    step_increase,
    window_increase,
)

increments = st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=60)


@st.composite
def counter_history(draw):
    """Scraped values of a counter and the true messages behind each sample.

    Resets happen right after a scrape, so the value after one is the messages since the reset;
    a reset is only generated where it shows as a drop, as Prometheus needs to see it.
    """
    start = draw(st.integers(min_value=0, max_value=10**12))
    values, truth = [], []
    value = start
    for messages in draw(increments):
        if draw(st.booleans()) and 0 < messages < value:
            value = messages
        else:
            value += messages
        values.append(Decimal(value))
        truth.append(messages)
    return Decimal(start), values, truth


@given(counter_history())
def test_increase_is_the_true_number_of_messages(history):
    baseline, values, truth = history

    assert series_increase(baseline, values) == sum(truth)


@given(counter_history(), st.data())
def test_split_windows_add_up_to_the_whole(history, data):
    baseline, values, _ = history
    cuts = sorted(data.draw(st.sets(st.integers(0, len(values)), max_size=6)))
    whole = series_increase(baseline, values)

    total = Decimal(0)
    previous_baseline = baseline
    for lo, hi in zip([0, *cuts], [*cuts, len(values)], strict=True):
        window = values[lo:hi]
        total += series_increase(previous_baseline, window)
        if window:
            previous_baseline = window[-1]

    assert total == whole


@given(st.lists(st.integers(0, 10**9), min_size=1, max_size=30).map(sorted))
def test_monotonic_series_increase_is_last_minus_baseline(raw):
    values = [Decimal(v) for v in raw]

    assert series_increase(values[0], values[1:]) == values[-1] - values[0]


@given(st.lists(st.integers(0, 10**9), min_size=1, max_size=30))
def test_increase_is_never_negative(raw):
    assert series_increase(None, [Decimal(v) for v in raw]) >= 0


def test_new_series_counts_from_zero():
    assert series_increase(None, [Decimal(42), Decimal(45)]) == 45


def test_drop_is_a_reset_and_counts_the_new_value():
    assert step_increase(Decimal(100), Decimal(7)) == 7
    assert step_increase(Decimal(100), Decimal(100)) == 0


def test_series_with_only_a_baseline_adds_nothing():
    baselines = {"a": Decimal(10), "gone": Decimal(99)}
    samples = {"a": [Decimal(12), Decimal(15)], "new": [Decimal(4)]}

    assert window_increase(baselines, samples) == 9


def test_whole_numbers_stay_exact_integers():
    assert as_report_number(Decimal("123456789012345")) == 123456789012345
    assert isinstance(as_report_number(Decimal("5")), int)
    assert as_report_number(Decimal("2.5")) == 2.5
