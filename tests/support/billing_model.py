"""The reference model: what Stripe must hold per Stripe customer and billing period.

It is computed from the reports and from link, renewal and retirement events alone, never from
collector state. It is pure: no I/O and no clock. Where the rules left a choice, the model takes
the simplest reading, and says so below.

1. **Bucket.** A window counts into one bucket: the Stripe customer that the collector customer
   was linked to when the window was forwarded, and the period of that link's subscription that
   contains ``window_end - 1 s``. A window ending before the subscription's first period counts
   into that first period. The tests settle before every relink, renewal and retirement, so the
   link in force when a window was forwarded is the link in force when it was ingested.
2. **increment** (``mqtt_messages``): the sum of the bucket's values.
3. **max** (``storage_gb``): windows are aligned, so "the peak over time of the sum across
   instances" is the peak, over the bucket's window ends, of the sum of the values of the
   bucket's windows that share that end. A late window raises its slot's sum. Retiring an
   instance never lowers the peak. Nothing carries into another bucket.
4. **set** (``devices``): the sum, over instances that are not retired, of each instance's
   newest value (by window end) among the bucket's windows. A renewal carries nothing: an
   instance that does not report in a period is not billed in it.
5. **Relink.** The old link's current ``set`` value carries into the new link's first bucket:
   each non-retired instance's newest device count in the old link's current bucket (its own
   windows and what was carried into it), together with its window end. A newer window of the
   same instance replaces it there; an older one does not. An instance that has not reported
   since the old link's last renewal is not billed to the old customer (rule 4), so it is not
   carried either.
6. **Retirement** drops the instance from the ``set`` of the bucket that is current at the time
   of retirement. It also drops the instance from every later bucket, since a retired instance
   never reports again in these tests. Earlier buckets keep their values.
7. **Whole numbers.** ``storage_gb`` rounds up after the sum and the peak. The other metrics are
   whole numbers already.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

ONE_SECOND = timedelta(seconds=1)
SEMANTICS = {"devices": "set", "mqtt_messages": "increment", "storage_gb": "max"}
PRICE_KEY = {
    "devices": "device_usage",
    "mqtt_messages": "mqtt_messages",
    "storage_gb": "storage_gb",
}
ROUNDED_UP = frozenset({"storage_gb"})


@dataclass(frozen=True, order=True)
class Period:
    """A billing period ``[start, end)``."""

    start: datetime
    end: datetime

    def __contains__(self, moment: object) -> bool:
        return isinstance(moment, datetime) and self.start <= moment < self.end


@dataclass(frozen=True)
class Bucket:
    """One Stripe customer's billing period: the unit Stripe's meter summaries are read in."""

    stripe_customer: str
    period: Period


@dataclass(frozen=True)
class Window:
    """One instance's report for an aligned window, reduced to what billing needs."""

    instance: str
    end: datetime
    metrics: tuple[tuple[str, Decimal], ...]

    @classmethod
    def of(cls, instance: str, end: datetime, metrics: Mapping[str, float | int]) -> Window:
        return cls(instance, end, tuple(sorted((k, _exact(v)) for k, v in metrics.items())))

    def value(self, metric: str) -> Decimal | None:
        return dict(self.metrics).get(metric)


@dataclass(frozen=True)
class Linked:
    """The customer is (re)linked to ``stripe_customer``, whose subscription begins ``period``."""

    stripe_customer: str
    period: Period


@dataclass(frozen=True)
class Renewed:
    """The current subscription moved on to ``period``."""

    period: Period


@dataclass(frozen=True)
class Ingested:
    window: Window


@dataclass(frozen=True)
class Retired:
    instance: str


Event = Linked | Renewed | Ingested | Retired


def _exact(value: float | int | Decimal) -> Decimal:
    if isinstance(value, Decimal):
        return value
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def period_of(window_end: datetime, periods: Sequence[Period]) -> Period:
    """The period holding the window's last second; before the first period, the first."""
    last_second = window_end - ONE_SECOND
    for period in periods:
        if last_second in period:
            return period
    if periods and last_second < periods[0].start:
        return periods[0]
    raise ValueError(f"no known period holds {last_second.isoformat()}: renew first")


def newest_per_instance(windows: Iterable[Window], metric: str) -> dict[str, Window]:
    """Each instance's newest window (by end) that carries ``metric``."""
    newest: dict[str, Window] = {}
    for window in windows:
        if window.value(metric) is None:
            continue
        held = newest.get(window.instance)
        if held is None or window.end > held.end:
            newest[window.instance] = window
    return newest


def whole(metric: str, value: Decimal) -> int:
    """The whole number Stripe holds for ``value``: storage rounds up, the rest are exact."""
    if metric in ROUNDED_UP:
        return math.ceil(value)
    if value != value.to_integral_value():
        raise ValueError(f"{metric} needs whole numbers, the model got {value}")
    return int(value)


def bucket_values(
    windows: Sequence[Window], carried: Iterable[Window], retired: Iterable[str]
) -> dict[str, int]:
    """What Stripe holds for one bucket, by price lookup key (rules 2 to 4 and 7)."""
    gone = set(retired)
    values: dict[str, int] = {}
    for metric, semantics in SEMANTICS.items():
        if semantics == "increment":
            total = sum((w.value(metric) or Decimal(0) for w in windows), Decimal(0))
        elif semantics == "max":
            slots: dict[datetime, Decimal] = defaultdict(Decimal)
            for window in windows:
                slots[window.end] += window.value(metric) or Decimal(0)
            total = max(slots.values(), default=Decimal(0))
        else:
            newest = newest_per_instance([*carried, *windows], metric)
            total = sum(
                (w.value(metric) or Decimal(0) for i, w in newest.items() if i not in gone),
                Decimal(0),
            )
        values[PRICE_KEY[metric]] = whole(metric, total)
    return values


@dataclass
class _Fold:
    links: list[tuple[str, list[Period]]] = field(default_factory=list)
    windows: dict[Bucket, list[Window]] = field(default_factory=lambda: defaultdict(list))
    carried: dict[Bucket, list[Window]] = field(default_factory=lambda: defaultdict(list))
    retired: dict[Bucket, set[str]] = field(default_factory=lambda: defaultdict(set))
    retired_ever: set[str] = field(default_factory=set)
    buckets: list[Bucket] = field(default_factory=list)

    def current(self) -> Bucket:
        if not self.links:
            raise ValueError("no link yet: link the customer before reporting usage")
        customer, periods = self.links[-1]
        return Bucket(customer, periods[-1])

    def apply(self, event: Event) -> None:
        if isinstance(event, Linked):
            carry = []
            if self.links:
                held = self.current()
                newest = newest_per_instance([*self.carried[held], *self.windows[held]], "devices")
                carry = [w for i, w in newest.items() if i not in self.retired_ever]
            self.links.append((event.stripe_customer, [event.period]))
            self.buckets.append(self.current())
            self.carried[self.current()] = [_devices_only(w) for w in carry]
        elif isinstance(event, Renewed):
            self.links[-1][1].append(event.period)
            self.buckets.append(self.current())
        elif isinstance(event, Ingested):
            customer, periods = self.links[-1]
            self.windows[Bucket(customer, period_of(event.window.end, periods))].append(
                event.window
            )
        else:
            self.retired_ever.add(event.instance)
            self.retired[self.current()].add(event.instance)


def _devices_only(window: Window) -> Window:
    return Window(
        window.instance, window.end, tuple((k, v) for k, v in window.metrics if k == "devices")
    )


def _folded(events: Iterable[Event]) -> _Fold:
    fold = _Fold()
    for event in events:
        fold.apply(event)
    return fold


def bucket_for(events: Iterable[Event], window_end: datetime) -> Bucket:
    """The bucket a window ending at ``window_end`` would count into if ingested now (rule 1)."""
    customer, periods = _folded(events).links[-1]
    return Bucket(customer, period_of(window_end, periods))


def current_bucket(events: Iterable[Event]) -> Bucket:
    """The current link's latest period."""
    return _folded(events).current()


def expected(events: Iterable[Event]) -> dict[Bucket, dict[str, int]]:
    """Every bucket the events opened, with what Stripe must hold for it (zeros when unused)."""
    fold = _folded(events)
    return {
        bucket: bucket_values(fold.windows[bucket], fold.carried[bucket], fold.retired[bucket])
        for bucket in fold.buckets
    }
