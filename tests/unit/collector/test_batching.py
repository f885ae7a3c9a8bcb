"""Batching arithmetic against an independent model of what Stripe's meters would bill."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.services.batching import Delivered, Member, batch_identifier, plan_batch
from common.catalogue import MetricCatalogue, Rounding
from common.semantics import Semantics
from common.windows import Window, calendar_month

CATALOGUE = MetricCatalogue.default()
START = datetime(2026, 5, 1, tzinfo=UTC)
PERIOD = calendar_month(START)
NOW = PERIOD.end + timedelta(days=1)


def stripe_bill(semantics: Semantics, events: list[tuple[datetime, int, int]]) -> int:
    """A sum meter adds every event; a last meter keeps the newest timestamp (last sent on ties)."""
    if semantics is Semantics.INCREMENT:
        return sum(q for _, q, _ in events)
    if not events:
        return 0
    return max(events, key=lambda e: (e[0], e[2]))[1]


def truth(metric: str, values: list[Decimal]) -> int:
    definition = CATALOGUE[metric]
    if definition.semantics is Semantics.INCREMENT:
        return definition.to_billable(sum(values, Decimal(0)))
    if definition.semantics is Semantics.SET:
        return definition.to_billable(values[-1])
    return definition.to_billable(max(values))


def simulate(
    metric: str,
    values: list[Decimal],
    arrival: list[int],
    cuts: set[int],
    coalesce: bool,
    rounding: Rounding | None = None,
) -> list[tuple[datetime, int, int]]:
    definition = CATALOGUE[metric]
    if rounding is not None:
        definition = definition.model_copy(update={"rounding": rounding})
    members = [
        Member(i, uuid.uuid4(), START + timedelta(hours=i + 1), value)
        for i, value in enumerate(values)
    ]
    state = Delivered()
    pending: list[Member] = []
    events: list[tuple[datetime, int, int]] = []

    def form() -> None:
        nonlocal state, pending
        while pending:
            pending.sort(key=lambda m: m.window_end)
            group = pending if coalesce else pending[:1]
            plan = plan_batch(definition, group, state, PERIOD, NOW)
            if plan.send:
                events.append((plan.event_timestamp, plan.quantity, len(events)))
            state = plan.after
            taken = {m.forward_id for m in plan.members}
            pending = [m for m in pending if m.forward_id not in taken]

    for step, index in enumerate(arrival):
        pending.append(members[index])
        if step in cuts:
            form()
    form()
    return events


@st.composite
def scenario(draw: st.DrawFn, metric: str) -> tuple[list[Decimal], list[int], set[int], bool]:
    if metric == "storage_gb":
        numbers = st.decimals(0, 10_000, places=2)
    else:
        numbers = st.integers(0, 10**9).map(Decimal)
    values = draw(st.lists(numbers, min_size=1, max_size=40))
    arrival = draw(st.permutations(range(len(values))))
    cuts = draw(st.sets(st.integers(0, len(values))))
    return values, list(arrival), cuts, draw(st.booleans())


@settings(max_examples=300)
@given(
    st.sampled_from(["mqtt_messages", "devices", "storage_gb"]).flatmap(
        lambda m: st.tuples(st.just(m), scenario(m))
    )
)
def test_what_stripe_bills_equals_the_truth(case: tuple) -> None:
    metric, (values, arrival, cuts, coalesce) = case
    events = simulate(metric, values, arrival, cuts, coalesce)
    semantics = CATALOGUE[metric].semantics
    assert stripe_bill(semantics, events) == truth(metric, values)


@settings(max_examples=200)
@given(st.lists(st.decimals(0, 100, places=3), min_size=1, max_size=40), st.data())
def test_rounded_increments_carry_instead_of_drifting(
    values: list[Decimal], data: st.DataObject
) -> None:
    arrival = data.draw(st.permutations(range(len(values))))
    cuts = data.draw(st.sets(st.integers(0, len(values))))
    events = simulate(
        "mqtt_messages",
        values,
        list(arrival),
        cuts,
        data.draw(st.booleans()),
        rounding=Rounding.CEIL,
    )
    expected = (
        CATALOGUE["mqtt_messages"]
        .model_copy(update={"rounding": Rounding.CEIL})
        .to_billable(sum(values, Decimal(0)))
    )
    assert sum(q for _, q, _ in events) == expected


@given(st.lists(st.integers(0, 10**6).map(Decimal), min_size=1, max_size=30))
def test_last_meter_timestamps_strictly_increase(values: list[Decimal]) -> None:
    events = simulate("devices", values, list(range(len(values))), set(range(len(values))), False)
    stamps = [e[0] for e in events]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == len(stamps)
    assert all(PERIOD.start <= s < PERIOD.end for s in stamps)


def test_unchanged_device_count_costs_no_call() -> None:
    events = simulate("devices", [Decimal(8)] * 24, list(range(24)), set(range(24)), False)
    assert len(events) == 1


def test_a_stale_set_is_never_sent_after_a_newer_one() -> None:
    events = simulate("devices", [Decimal(3), Decimal(9)], [1, 0], {0, 1}, True)
    assert [q for _, q, _ in events] == [9]


def test_identifier_depends_only_on_the_member_set() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    end = START + timedelta(hours=1)
    members = [Member(1, a, end, Decimal(1)), Member(2, b, end, Decimal(2))]
    assert batch_identifier("meter_events", "c", "m", members) == batch_identifier(
        "meter_events", "c", "m", list(reversed(members))
    )
    assert batch_identifier("meter_events", "c", "m", members[:1]) != batch_identifier(
        "meter_events", "c", "m", members
    )


def test_window_on_the_period_boundary_is_stamped_inside_its_period() -> None:
    definition = CATALOGUE["mqtt_messages"]
    member = Member(1, uuid.uuid4(), PERIOD.end, Decimal(5))
    plan = plan_batch(definition, [member], Delivered(), PERIOD, NOW)
    assert PERIOD.start <= plan.event_timestamp < PERIOD.end
    assert Window(PERIOD.start, PERIOD.end) == PERIOD
