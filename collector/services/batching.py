"""What one Stripe call carries for a (customer, metric, period), given what was delivered before.

Pure arithmetic, no I/O. Increments send the change in the billed total, so a rounding rule
applies to the period's running total and never drifts across batches. ``set`` and ``max`` go
to ``last`` meters: a value is only sent when it changes what Stripe bills, and always with a
timestamp later than the previous event, so the newest event is the one Stripe keeps.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from common.catalogue import MetricDefinition
from common.semantics import Semantics
from common.windows import Window

IDENTIFIER_NAMESPACE = uuid.UUID("2b8f5f0e-7c1a-5d8e-a9f3-4c6b1d2e3f40")
ONE_SECOND = timedelta(seconds=1)
MAX_AHEAD = timedelta(minutes=4)


@dataclass(frozen=True)
class Member:
    """A waiting forward: one window's value of one metric."""

    forward_id: int
    report_id: uuid.UUID
    window_end: datetime
    value: Decimal
    generation: int = 0


@dataclass(frozen=True)
class Delivered:
    """What Stripe has acknowledged so far in the period."""

    raw_total: Decimal = Decimal(0)
    billed_total: int = 0
    last_value: Decimal | None = None
    newest_window_end: datetime | None = None
    last_event_timestamp: datetime | None = None


@dataclass(frozen=True)
class Plan:
    """The outcome for a group of members: a call to make, or nothing to send."""

    members: tuple[Member, ...]
    send: bool
    quantity: int
    raw_value: Decimal
    event_timestamp: datetime
    newest_window_end: datetime
    after: Delivered
    superseded: bool = False


def event_time(window_end: datetime) -> datetime:
    """Usage of window (s, e] is stamped one second before e, inside the window's period."""
    return window_end - ONE_SECOND


def batch_identifier(mode: str, customer_id: str, metric: str, members: Sequence[Member]) -> str:
    """Deterministic per member set: a resend after a crash carries the same identifier.

    Members put back in the outbox after Stripe reported their event failed, or rebilled, are
    one generation on, so the new event has a new identifier.
    """
    ids = ",".join(sorted(str(m.report_id) for m in members))
    generation = max(m.generation for m in members)
    suffix = f"\x1fg{generation}" if generation else ""
    name = f"{mode}\x1f{customer_id}\x1f{metric}\x1f{ids}{suffix}"
    return str(uuid.uuid5(IDENTIFIER_NAMESPACE, name))


def _stamp(
    members: Sequence[Member], before: Delivered, period: Window, now: datetime, increasing: bool
) -> datetime:
    stamp = event_time(max(m.window_end for m in members))
    if increasing and before.last_event_timestamp is not None:
        stamp = max(stamp, before.last_event_timestamp + ONE_SECOND)
    stamp = min(stamp, period.end - ONE_SECOND, now + MAX_AHEAD)
    stamp = max(stamp, period.start)
    if increasing and before.last_event_timestamp is not None:
        stamp = max(stamp, before.last_event_timestamp)
    return stamp.replace(microsecond=0)


def plan_batch(
    definition: MetricDefinition,
    members: Sequence[Member],
    before: Delivered,
    period: Window,
    now: datetime,
) -> Plan:
    """Fold one instance's ``members`` (all in ``period``) into at most one Stripe call."""
    if not members:
        raise ValueError("a batch needs at least one member")
    ordered = sorted(members, key=lambda m: (m.window_end, m.forward_id))
    if definition.semantics is Semantics.INCREMENT:
        return plan_increment(definition, ordered, before, period, now)
    if definition.semantics is Semantics.SET:
        advanced = before.newest_window_end is None or (
            ordered[-1].window_end > before.newest_window_end
        )
        return plan_gauge(definition, ordered, before, period, now, ordered[-1].value, advanced)
    peak = max(m.value for m in ordered)
    value = peak if before.last_value is None else max(before.last_value, peak)
    return plan_gauge(definition, ordered, before, period, now, value, True)


def plan_increment(
    definition: MetricDefinition,
    members: Sequence[Member],
    before: Delivered,
    period: Window,
    now: datetime,
) -> Plan:
    """The change in the period's billed total that ``members`` make."""
    ordered = tuple(sorted(members, key=lambda m: (m.window_end, m.forward_id)))
    newest_end = max(ordered[-1].window_end, before.newest_window_end or ordered[-1].window_end)
    raw = sum((m.value for m in ordered), Decimal(0))
    raw_total = before.raw_total + raw
    billed_total = definition.to_billable(raw_total)
    quantity = billed_total - before.billed_total
    after = Delivered(
        raw_total, billed_total, before.last_value, newest_end, before.last_event_timestamp
    )
    stamp = _stamp(ordered, before, period, now, increasing=False)
    if quantity > 0:
        after = _with_stamp(after, stamp)
    return Plan(ordered, quantity > 0, quantity, raw, stamp, newest_end, after)


def plan_gauge(
    definition: MetricDefinition,
    members: Sequence[Member],
    before: Delivered,
    period: Window,
    now: datetime,
    value: Decimal,
    advanced: bool,
) -> Plan:
    """A ``last`` meter's new value for the period, sent only when it changes what is billed.

    ``value`` is the period's combined value with ``members``; ``advanced`` is False when no
    member is newer than what its instance already reported (a late ``set`` window).
    """
    ordered = tuple(sorted(members, key=lambda m: (m.window_end, m.forward_id)))
    newest_end = max(ordered[-1].window_end, before.newest_window_end or ordered[-1].window_end)
    if not advanced:
        return Plan(
            ordered,
            False,
            before.billed_total,
            value,
            before.last_event_timestamp or period.start,
            newest_end,
            Delivered(
                before.raw_total,
                before.billed_total,
                before.last_value,
                newest_end,
                before.last_event_timestamp,
            ),
            superseded=True,
        )
    quantity = definition.to_billable(value)
    changed = before.last_value is None or quantity != definition.to_billable(before.last_value)
    stamp = _stamp(ordered, before, period, now, increasing=True)
    after = Delivered(
        raw_total=value,
        billed_total=quantity,
        last_value=value,
        newest_window_end=newest_end,
        last_event_timestamp=stamp if changed else before.last_event_timestamp,
    )
    return Plan(ordered, changed, quantity, value, stamp, newest_end, after)


def _with_stamp(delivered: Delivered, stamp: datetime) -> Delivered:
    return Delivered(
        delivered.raw_total,
        delivered.billed_total,
        delivered.last_value,
        delivered.newest_window_end,
        stamp,
    )
