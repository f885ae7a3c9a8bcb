"""Which billing period a window bills in, and which subscription a customer's link follows.

Pure rules, no I/O:

- A period belongs to one Stripe customer and one subscription. Only the periods of the
  customer's *current* link count; among them the one containing the moment wins, the latest
  start first if Stripe's periods ever overlap. Row order never decides.
- A moment before the current subscription's first period bills in that first period (usage
  waiting from before a link or relink is not lost). A moment after its last known period is
  unknown: the usage waits until the renewal is known.
- UTC calendar months bill only a Stripe customer that has no live subscription at all.
- A subscription change becomes current only if it is an operator's link, the customer has no
  link yet, it updates the current subscription with news at least as recent, or it is a newer
  live subscription. A late webhook never moves a customer back.
"""

from __future__ import annotations

import calendar
import itertools
from collections.abc import Sequence
from datetime import datetime, timedelta

from collector.adapters.db.links import Link, LinkChange
from collector.adapters.db.outbox_records import PeriodRef
from common.windows import calendar_month

LIVE_STATUSES = ("active", "trialing", "past_due")


def resolve(moment: datetime, link: Link, periods: Sequence[PeriodRef]) -> PeriodRef | None:
    """The period of ``link`` that bills ``moment``; None while it is not known."""
    if link.subscription_id:
        if not periods:
            return None
        containing = [p for p in periods if p.start <= moment < p.end]
        if containing:
            return max(containing, key=lambda p: (p.start, p.end))
        ordered = sorted(periods, key=lambda p: (p.start, p.end))
        if moment < ordered[0].start:
            return ordered[0]
        for before, after in itertools.pairwise(ordered):
            if before.end <= moment < after.start:
                return gap_period(before, after, moment)
        return None
    if link.subscription_status == "none":
        month = calendar_month(moment)
        stored = [p for p in periods if p.start == month.start and p.subscription_id == ""]
        if stored:
            return stored[0]
        return PeriodRef(
            None, link.customer_id, link.stripe_customer_id, "", month.start, month.end
        )
    return None


def _add_months(moment: datetime, months: int, day: int) -> datetime:
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    return moment.replace(year=year, month=month, day=min(day, calendar.monthrange(year, month)[1]))


def gap_period(before: PeriodRef, after: PeriodRef, moment: datetime) -> PeriodRef:
    """The period between two known periods that contains ``moment``.

    Boundaries step from ``before.end`` at ``before``'s cadence; the last one is ``after.start``.
    """
    length = before.end - before.start
    cuts = [before.end]
    if length < timedelta(days=27):
        while cuts[-1] + length < after.start:
            cuts.append(cuts[-1] + length)
    else:
        months = max(1, round(length.days / 30.44))
        day = max(before.start.day, before.end.day, after.start.day)
        step = 1
        while (nxt := _add_months(before.end, months * step, day)) < after.start:
            cuts.append(nxt)
            step += 1
    cuts.append(after.start)
    for start, end in itertools.pairwise(cuts):
        if start <= moment < end:
            return PeriodRef(
                None,
                before.customer_id,
                before.stripe_customer_id,
                before.subscription_id,
                start,
                end,
            )
    raise ValueError("moment is not between the two periods")


def becomes_current(current: Link | None, change: LinkChange) -> bool:
    """Whether a subscription change moves the customer's link (see the module docstring)."""
    if change.explicit or current is None:
        return True
    facts = change.facts
    if facts is None:
        return current.stripe_customer_id == change.stripe_customer_id
    stale = (
        change.event_at is not None
        and current.event_at is not None
        and change.event_at < current.event_at
    )
    if facts.subscription_id is not None and facts.subscription_id == current.subscription_id:
        return not stale
    if facts.subscription_id is None:
        same_customer = current.stripe_customer_id == change.stripe_customer_id
        return same_customer and current.subscription_id is None and not stale
    if facts.status not in LIVE_STATUSES:
        return False
    if current.subscription_id is None:
        return not stale
    if facts.created is None or current.subscription_created is None:
        return not stale
    return facts.created > current.subscription_created
