"""The forwarder's decisions inside batch formation: which period, and what one call carries.

``choose`` takes a group's waiting forwards (oldest window first) and the customer's current
link: the oldest forward's period is formed now, with every other forward of that period; no
known period means the group waits. ``plan`` combines the members with what the period already
billed (other instances' newest values, overlapping windows) and asks ``batching`` for the call.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import structlog

from collector.adapters.db.outbox_records import (
    Choice,
    Formation,
    Link,
    MeterState,
    NewBatch,
    PendingForward,
    PeriodRef,
)
from collector.services.batching import (
    Delivered,
    Member,
    Plan,
    batch_identifier,
    event_time,
    plan_gauge,
    plan_increment,
)
from collector.services.combination import InstanceWindow, newest_by_instance, peak_of_sums
from collector.services.periods import resolve
from collector.telemetry import CollectorMetrics
from common.catalogue import MetricCatalogue, MetricDefinition
from common.clock import Clock
from common.semantics import Semantics
from common.windows import Window

log = structlog.get_logger("collector.planning")


def _delivered(state: MeterState) -> Delivered:
    return Delivered(
        state.raw_total,
        state.billed_total,
        state.last_value,
        state.newest_window_end,
        state.last_event_timestamp,
    )


def as_window(forward: PendingForward) -> InstanceWindow:
    """A forward as one instance's window."""
    start = forward.window_start or forward.window_end
    return InstanceWindow(forward.instance_id, start, forward.window_end, forward.value, forward.id)


class BatchPlanner:
    def __init__(
        self,
        catalogue: MetricCatalogue,
        clock: Clock,
        metrics: CollectorMetrics,
        *,
        mode: str,
        coalesce: bool,
    ) -> None:
        self._catalogue = catalogue
        self._clock = clock
        self._metrics = metrics
        self._mode = mode
        self._coalesce = coalesce

    def moment(self, forward: PendingForward, now: datetime) -> datetime:
        """When a forward's usage bills: its window's last second; a rebill bills now."""
        return now if forward.kind == "rebill" else event_time(forward.window_end)

    def choose(self, members: list[PendingForward], link: Link, periods: list[PeriodRef]) -> Choice:
        now = self._clock.now()
        period = resolve(self.moment(members[0], now), link, periods)
        if period is None:
            return Choice(None, ())
        group = [m for m in members if resolve(self.moment(m, now), link, periods) == period]
        if not self._coalesce:
            group = group[:1]
        return Choice(period, tuple(group))

    def plan(
        self,
        choice: Choice,
        period: PeriodRef,
        state: MeterState,
        context: list[PendingForward],
    ) -> Formation | None:
        first = choice.members[0]
        definition = self._catalogue.get(first.metric)
        if definition is None or period.id is None:
            log.error("forward for a metric not in the catalogue", metric=first.metric)
            return None
        now = self._clock.now()
        window = Window(period.start, period.end)
        members = [
            Member(
                m.id,
                m.report_id,
                now if m.kind == "rebill" else m.window_end,
                m.value,
                m.generation,
            )
            for m in choice.members
        ]
        before = _delivered(state)
        plan = _plan(definition, members, choice, before, window, now, context)
        ids = tuple(m.forward_id for m in plan.members)
        if len(ids) > 1:
            self._metrics.coalesced.labels(first.metric).inc(len(ids) - 1)
        if not plan.send:
            self._metrics.coalesced.labels(first.metric).inc(1)
            after = plan.after
            return Formation(
                settled_ids=ids,
                settled_as="superseded" if plan.superseded else "sent",
                state=MeterState(
                    period.id,
                    state.customer_id,
                    state.metric,
                    period.start,
                    period.end,
                    after.raw_total,
                    after.billed_total,
                    after.last_value,
                    after.newest_window_end,
                    after.last_event_timestamp,
                    state.calls,
                ),
                period_id=period.id,
            )
        return Formation(
            batch=NewBatch(
                customer_id=first.customer_id,
                metric=first.metric,
                semantics=definition.semantics.value,
                mode=self._mode,
                period_id=period.id,
                stripe_customer_id=period.stripe_customer_id,
                period_start=period.start,
                period_end=period.end,
                identifier=batch_identifier(
                    self._mode, first.customer_id, first.metric, plan.members
                ),
                quantity=plan.quantity,
                raw_value=plan.raw_value,
                event_timestamp=plan.event_timestamp,
                newest_window_end=plan.newest_window_end,
                member_ids=ids,
                created_at=now,
            ),
            period_id=period.id,
        )


def _plan(
    definition: MetricDefinition,
    members: list[Member],
    choice: Choice,
    before: Delivered,
    window: Window,
    now: datetime,
    context: list[PendingForward],
) -> Plan:
    if definition.semantics is Semantics.INCREMENT:
        return plan_increment(definition, members, before, window, now)
    windows = [as_window(f) for f in context] + [as_window(m) for m in choice.members]
    if definition.semantics is Semantics.SET:
        newest = newest_by_instance(windows)
        advanced = before.last_value is None or any(
            newest[m.instance_id].order == m.id for m in choice.members
        )
        value = sum((w.value for w in newest.values()), Decimal(0))
        return plan_gauge(definition, members, before, window, now, value, advanced)
    spans = [(w.start, w.end) for w in map(as_window, choice.members)]
    candidate = peak_of_sums(windows, within=spans)
    assert candidate is not None
    value = candidate if before.last_value is None else max(before.last_value, candidate)
    return plan_gauge(definition, members, before, window, now, value, True)
