"""Several instances of one customer combine exactly, whatever order their windows arrive in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from collector.services.combination import (
    InstanceWindow,
    combine,
    combined_set,
    peak_of_sums,
)
from common.semantics import Semantics

T0 = datetime(2026, 4, 1, tzinfo=UTC)


def window(instance: str, start_h: int, hours: int, value: int, order: int = 0) -> InstanceWindow:
    start = T0 + timedelta(hours=start_h)
    return InstanceWindow(instance, start, start + timedelta(hours=hours), Decimal(value), order)


@st.composite
def instance_windows(draw: st.DrawFn) -> list[InstanceWindow]:
    """Each instance reports contiguous windows at its own interval, with gaps allowed."""
    result = []
    order = 0
    for instance in draw(st.lists(st.sampled_from("abc"), min_size=1, max_size=3, unique=True)):
        step = draw(st.sampled_from([1, 2, 3]))
        for slot in range(draw(st.integers(1, 8))):
            if draw(st.booleans()) or slot == 0:
                order += 1
                value = draw(st.integers(0, 100))
                result.append(window(instance, slot * step, step, value, order))
    return result


def brute_peak(windows: list[InstanceWindow]) -> Decimal:
    """The sum across instances sampled at every half hour."""
    last = max(w.end for w in windows)
    peak = Decimal(0)
    moment = T0 + timedelta(minutes=30)
    while moment < last:
        per: dict[str, Decimal] = {}
        for w in windows:
            if w.start < moment <= w.end:
                per[w.instance_id] = max(per.get(w.instance_id, Decimal(0)), w.value)
        peak = max(peak, sum(per.values(), Decimal(0)))
        moment += timedelta(hours=1)
    return peak


def test_two_instances_bill_the_sum_of_counts_and_the_peak_of_summed_storage() -> None:
    prod = [window("acme-prod", 0, 1, 100), window("acme-prod", 1, 1, 100)]
    staging = [window("acme-staging", 0, 1, 20), window("acme-staging", 1, 1, 20)]
    assert combined_set(prod + staging) == 120
    storage = [
        window("acme-prod", 0, 1, 50),
        window("acme-staging", 0, 1, 5),
        window("acme-prod", 1, 1, 40),
        window("acme-staging", 1, 1, 10),
    ]
    assert peak_of_sums(storage) == 55


def test_instances_reporting_at_different_intervals_sum_at_every_instant() -> None:
    hourly = [window("a", 0, 1, 10), window("a", 1, 1, 30)]
    two_hourly = [window("b", 0, 2, 5)]
    assert peak_of_sums(hourly + two_hourly) == 35


def test_a_retired_instance_newest_zero_drops_it_from_the_count() -> None:
    windows = [window("a", 0, 1, 7, 1), window("b", 0, 1, 3, 2), window("b", 1, 0, 0, 3)]
    assert combined_set(windows) == 7


@given(instance_windows())
def test_peak_of_sums_equals_the_sum_sampled_at_every_instant(windows: list) -> None:
    assert peak_of_sums(windows) == brute_peak(windows)


@given(instance_windows(), st.randoms(use_true_random=False), st.integers(1, 4))
def test_running_peak_over_batches_in_any_order_equals_the_whole_peak(
    windows: list, rng, batches: int
) -> None:
    """What formation does: each batch recomputes the peak only where its windows lie."""
    shuffled = list(windows)
    rng.shuffle(shuffled)
    seen: list[InstanceWindow] = []
    running: Decimal | None = None
    for index in range(batches):
        batch = shuffled[index::batches]
        if not batch:
            continue
        seen.extend(batch)
        candidate = peak_of_sums(seen, within=[(w.start, w.end) for w in batch])
        assert candidate is not None
        running = candidate if running is None else max(running, candidate)
    assert running == peak_of_sums(windows)


@given(instance_windows(), st.randoms(use_true_random=False))
def test_set_combination_does_not_depend_on_arrival_order(windows: list, rng) -> None:
    shuffled = list(windows)
    rng.shuffle(shuffled)
    assert combined_set(shuffled) == combined_set(windows)
    newest: dict[str, InstanceWindow] = {}
    for w in windows:
        if w.instance_id not in newest or (w.end, w.order) > (
            newest[w.instance_id].end,
            newest[w.instance_id].order,
        ):
            newest[w.instance_id] = w
    assert combine(Semantics.SET, windows) == sum((w.value for w in newest.values()), Decimal(0))
    assert combine(Semantics.INCREMENT, windows) == sum((w.value for w in windows), Decimal(0))
