from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from collector.stripe_sandbox import aggregation

record_strategy = st.lists(
    st.tuples(st.sampled_from(["set", "increment"]), st.integers(0, 20), st.integers(0, 100)),
    max_size=30,
)


def _replay(records: list[tuple[str, int, int]]) -> dict[int, int]:
    quantities: dict[int, int] = {}
    for action, ts, qty in records:
        quantities[ts] = qty if action == "set" else quantities.get(ts, 0) + qty
    return quantities


@given(record_strategy)
def test_legacy_aggregations_over_replayed_records(records: list[tuple[str, int, int]]) -> None:
    quantities = _replay(records)
    start, end = 5, 15
    inside = sorted((ts, q) for ts, q in quantities.items() if start <= ts < end)
    before_end = sorted((ts, q) for ts, q in quantities.items() if ts < end)

    assert aggregation.legacy_total("sum", quantities, start, end) == sum(q for _, q in inside)
    assert aggregation.legacy_total("max", quantities, start, end) == max(
        (q for _, q in inside), default=0
    )
    assert aggregation.legacy_total("last_during_period", quantities, start, end) == (
        inside[-1][1] if inside else 0
    )
    assert aggregation.legacy_total("last_ever", quantities, start, end) == (
        before_end[-1][1] if before_end else 0
    )


def _event(seq: int, ts: int, value: int) -> aggregation.MeterEventRecord:
    return aggregation.MeterEventRecord(seq, f"i{seq}", "e", "mtr", "cus", value, ts, ts, "v1")


def test_last_prefers_latest_timestamp_then_latest_arrival() -> None:
    events = [_event(1, 10, 5), _event(2, 5, 9), _event(3, 10, 7)]

    assert aggregation.aggregate("last", events) == 7
    assert aggregation.aggregate("sum", events) == 21
    assert aggregation.aggregate("count", events) == 3


def test_day_windows_list_only_days_with_events() -> None:
    events = [_event(1, 100, 1), _event(2, 86400 * 2 + 5, 4)]

    spans = aggregation.summaries("sum", events, start=0, end=86400 * 3, window="day")

    assert spans == [(0, 86400, 1), (86400 * 2, 86400 * 3, 4)]
