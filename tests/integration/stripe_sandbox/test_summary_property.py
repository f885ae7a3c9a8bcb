"""Property: whatever meter events arrive, summaries equal an independently computed aggregate."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stripe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.stripe_sandbox import START, Sandbox, running_sandbox

FORMULAS = ("sum", "count", "last")
WINDOW = 6 * 3600
BASE = int(START.timestamp()) - WINDOW

event_strategy = st.tuples(
    st.sampled_from(FORMULAS),
    st.integers(0, 1),  # customer
    st.integers(-5, 10**9),  # value
    st.integers(0, WINDOW - 1),  # seconds after BASE
    st.integers(0, 15),  # identifier: small range so duplicates happen
)


@pytest.fixture(scope="module")
def shared_sandbox() -> Iterator[Sandbox]:
    with running_sandbox() as sandbox:
        yield sandbox


def _expected(sent: list[tuple[str, int, int, int, int]], formula: str, customer: int) -> int:
    mine = [(ts, order, v) for f, c, v, ts, order in sent if f == formula and c == customer]
    if formula == "sum":
        return sum(v for _, _, v in mine)
    if formula == "count":
        return len(mine)
    return max(mine)[2] if mine else 0


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(events=st.lists(event_strategy, max_size=25))
def test_summary_matches_ground_truth(
    shared_sandbox: Sandbox, events: list[tuple[str, int, int, int, int]]
) -> None:
    control, client = shared_sandbox.control, shared_sandbox.client
    control.reset()
    customers = [client.v1.customers.create({"name": f"c{i}"}).id for i in range(2)]
    meters = {
        formula: client.v1.billing.meters.create(
            {
                "display_name": formula,
                "event_name": f"m_{formula}",
                "default_aggregation": {"formula": formula},
            }
        )
        for formula in FORMULAS
    }
    accepted: list[tuple[str, int, int, int, int]] = []
    seen: set[int] = set()
    for order, (formula, customer, value, offset, ident) in enumerate(events):
        try:
            client.v1.billing.meter_events.create(
                {
                    "event_name": f"m_{formula}",
                    "identifier": f"id-{ident}",
                    "timestamp": BASE + offset,
                    "payload": {"stripe_customer_id": customers[customer], "value": str(value)},
                }
            )
        except stripe.InvalidRequestError as exc:
            refused = (ident, exc.code)
        else:
            refused = None
        if refused is not None:
            assert refused == (ident, "resource_already_exists")
            assert ident in seen
            continue
        assert ident not in seen
        seen.add(ident)
        accepted.append((formula, customer, value, BASE + offset, order))

    for formula, meter in meters.items():
        for index, customer_id in enumerate(customers):
            summary = client.v1.billing.meters.event_summaries.list(
                meter.id,
                {"customer": customer_id, "start_time": BASE, "end_time": BASE + WINDOW},
            ).data[0]
            assert summary.aggregated_value == _expected(accepted, formula, index)
