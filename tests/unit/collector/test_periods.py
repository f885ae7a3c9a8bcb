"""Which period bills a moment, and which subscription a link follows: never row order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from collector.adapters.db.links import Link, LinkChange, SubscriptionFacts
from collector.adapters.db.outbox_records import PeriodRef
from collector.services.periods import becomes_current, resolve

NOON = datetime(2026, 4, 1, 12, tzinfo=UTC)


def link(subscription: str | None = "sub_1", status: str | None = "active") -> Link:
    return Link("c", "cus_1", subscription, status)


def period(pid: int, start: datetime, days: int = 30, sub: str = "sub_1") -> PeriodRef:
    return PeriodRef(pid, "c", "cus_1", sub, start, start + timedelta(days=days))


def test_a_moment_after_the_last_known_period_waits_instead_of_using_a_calendar_month() -> None:
    known = [period(1, NOON)]
    assert resolve(NOON + timedelta(days=30, hours=1), link(), known) is None


def test_a_moment_before_the_first_period_bills_in_the_first_period() -> None:
    known = [period(1, NOON), period(2, NOON + timedelta(days=30))]
    assert resolve(NOON - timedelta(days=3), link(), known) == known[0]


def test_calendar_months_only_when_the_stripe_customer_has_no_subscription() -> None:
    chosen = resolve(NOON, link(None, "none"), [])
    assert chosen is not None
    assert (chosen.start, chosen.end, chosen.subscription_id) == (
        datetime(2026, 4, 1, tzinfo=UTC),
        datetime(2026, 5, 1, tzinfo=UTC),
        "",
    )
    assert resolve(NOON, link(None, None), []) is None


@given(st.permutations(range(3)), st.integers(0, 89 * 24))
def test_the_period_chosen_does_not_depend_on_row_order(order: list[int], hours: int) -> None:
    known = [period(i + 1, NOON + timedelta(days=30 * i)) for i in range(3)]
    moment = NOON + timedelta(hours=hours)
    shuffled = [known[i] for i in order]
    assert resolve(moment, link(), shuffled) == resolve(moment, link(), known)
    chosen = resolve(moment, link(), known)
    assert chosen is not None
    assert chosen.start <= moment < chosen.end


def current(created: datetime, event_at: datetime | None = None) -> Link:
    return Link("c", "cus_1", "sub_new", "active", created, None, event_at, 1)


def change(sub: str, status: str, created: datetime, event_at: datetime | None) -> LinkChange:
    facts = SubscriptionFacts(sub, status, created)
    return LinkChange("c", "cus_1", facts, event_at=event_at)


def test_a_late_webhook_for_an_old_subscription_never_moves_the_customer_back() -> None:
    now_link = current(NOON, NOON + timedelta(days=1))
    stale = change("sub_old", "active", NOON - timedelta(days=40), NOON + timedelta(hours=1))
    assert not becomes_current(now_link, stale)
    deleted = change("sub_old", "canceled", NOON - timedelta(days=40), NOON + timedelta(days=2))
    assert not becomes_current(now_link, deleted)


def test_an_older_event_for_the_current_subscription_is_ignored() -> None:
    now_link = current(NOON, NOON + timedelta(days=1))
    assert not becomes_current(now_link, change("sub_new", "active", NOON, NOON))
    assert becomes_current(now_link, change("sub_new", "past_due", NOON, NOON + timedelta(days=2)))


def test_a_newer_live_subscription_and_an_operator_link_win() -> None:
    now_link = current(NOON)
    newer = change("sub_newer", "active", NOON + timedelta(days=1), None)
    assert becomes_current(now_link, newer)
    explicit = LinkChange("c", "cus_2", None, explicit=True)
    assert becomes_current(now_link, explicit)


def monthly(pid: int, start: datetime, end: datetime) -> PeriodRef:
    return PeriodRef(pid, "c", "cus_1", "sub_1", start, end)


def test_a_missed_renewal_between_two_known_periods_is_the_gap_itself() -> None:
    march = monthly(1, datetime(2026, 3, 1, 12, tzinfo=UTC), datetime(2026, 4, 1, 12, tzinfo=UTC))
    may = monthly(2, datetime(2026, 5, 1, 12, tzinfo=UTC), datetime(2026, 6, 1, 12, tzinfo=UTC))
    chosen = resolve(datetime(2026, 4, 19, tzinfo=UTC), link(), [may, march])
    assert chosen is not None
    assert (chosen.id, chosen.start, chosen.end) == (None, march.end, may.start)


def test_several_missed_renewals_step_at_the_subscription_cadence() -> None:
    jan = monthly(1, datetime(2026, 1, 31, tzinfo=UTC), datetime(2026, 2, 28, tzinfo=UTC))
    may = monthly(2, datetime(2026, 5, 31, tzinfo=UTC), datetime(2026, 6, 30, tzinfo=UTC))
    found = {
        (p.start, p.end)
        for day in range(0, 92, 3)
        if (p := resolve(jan.end + timedelta(days=day), link(), [jan, may])) is not None
    }
    assert found == {
        (datetime(2026, 2, 28, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC)),
        (datetime(2026, 3, 31, tzinfo=UTC), datetime(2026, 4, 30, tzinfo=UTC)),
        (datetime(2026, 4, 30, tzinfo=UTC), datetime(2026, 5, 31, tzinfo=UTC)),
    }
