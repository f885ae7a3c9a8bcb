"""The customers table: filters keep exactly the matching customers, every sort is total."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from collector.api.console.customer_table import SORT_KEYS, TableQuery, table
from collector.services.customers import CustomerView, InstanceView

NOW = datetime(2026, 3, 1, tzinfo=UTC)
STATES = ("in_sync", "drifting", "settling", "unknown")
IDS = ("cust_a", "cust_b", "cust_ab", "cust_ba", "cust_c", "cust_cab", "Cust_B", "acme", "b")


@st.composite
def views(draw: st.DrawFn) -> CustomerView:
    linked = draw(st.booleans())
    instances = [
        InstanceView(
            f"i{n}",
            NOW - timedelta(minutes=draw(st.integers(0, 5000))),
            NOW,
            3600.0,
            draw(st.booleans()),
        )
        for n in range(draw(st.integers(0, 3)))
    ]
    return CustomerView(
        customer_id=draw(st.sampled_from(IDS)),
        stripe_customer_id="cus_X" if linked else None,
        subscription_id=None,
        period=None,
        instances=instances,
        pending=draw(st.integers(0, 3)),
        sent=0,
        dead=draw(st.integers(0, 3)),
        oldest_unbilled=None,
        oldest_unbilled_seconds=draw(st.none() | st.floats(0, 1e6)),
        reconcile=draw(st.sampled_from(STATES)),
        reconciled_at=None,
        unbillable=draw(st.none() | st.just("not linked")),
    )


customers = st.lists(views(), max_size=8, unique_by=lambda v: v.customer_id)
queries = st.builds(
    TableQuery,
    search=st.sampled_from(["", "a", "B", "cust_c"]),
    link=st.sampled_from([None, "linked", "unlinked"]),
    reconcile=st.sampled_from([None, *STATES]),
    silent=st.booleans(),
    unbillable=st.booleans(),
    sort=st.sampled_from(sorted(SORT_KEYS)),
    descending=st.booleans(),
)


@given(customers, queries)
def test_the_table_keeps_exactly_the_customers_every_filter_matches(
    listed: list[CustomerView], query: TableQuery
) -> None:
    shown = {v.customer_id for v in table(listed, query)}
    for view in listed:
        matches = (
            query.search.lower() in view.customer_id.lower()
            and (query.link is None or (query.link == "linked") == view.linked)
            and (query.reconcile is None or view.reconcile == query.reconcile)
            and (not query.silent or any(i.silent for i in view.instances))
            and (not query.unbillable or view.unbillable is not None)
        )
        assert (view.customer_id in shown) == matches


@given(customers, queries)
def test_rows_follow_the_sort_and_ties_fall_back_to_the_customer_id(
    listed: list[CustomerView], query: TableQuery
) -> None:
    rows = table(listed, query)
    key = SORT_KEYS[query.sort]
    for before, after in itertools.pairwise(rows):
        a, b = key(before), key(after)
        assert (a >= b) if query.descending else (a <= b)
        if a == b:
            assert before.customer_id < after.customer_id
    assert table(list(reversed(listed)), query) == rows


def test_a_header_link_flips_its_own_sort_and_starts_numbers_largest_first() -> None:
    query = TableQuery(sort="customer", link="unlinked")
    assert query.sort_params("customer") == {
        "link": "unlinked",
        "sort": "customer",
        "order": "desc",
    }
    assert query.sort_params("dead") == {"link": "unlinked", "sort": "dead", "order": "desc"}
    by_dead = TableQuery(sort="dead", descending=True)
    assert by_dead.sort_params("dead") == {"sort": "dead"}
    assert by_dead.sort_params("reconcile") == {"sort": "reconcile"}
