"""Reading usage back: history pages, the latest report, and per-metric totals for a period."""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from collector.adapters.db.links import LinkStore
from collector.adapters.db.reports import HistoryQuery, IncompleteWindows, ReportStore
from collector.adapters.db.tables import ReportRow
from collector.errors import NotFound, ValidationFailed
from collector.services.combination import InstanceWindow, combine
from collector.services.periods import resolve
from common.catalogue import MetricCatalogue
from common.clock import Clock
from common.schema import EARLIEST, LATEST
from common.windows import Window, as_utc, calendar_month


@dataclass(frozen=True)
class HistoryPage:
    reports: Sequence[ReportRow]
    next_cursor: str | None


@dataclass(frozen=True)
class MetricTotal:
    name: str
    semantics: str
    unit: str
    value: Decimal
    reports: int
    incomplete_windows: int = 0
    """Windows of the period whose report lists this metric as missing or unmeasured."""


class PeriodSource(enum.StrEnum):
    """Where the bounds of a totals period that the caller did not give came from."""

    SUBSCRIPTION = "subscription"
    """The customer's current billing period, the one ``/reconcile`` uses."""
    CALENDAR = "calendar"
    """The current UTC calendar month: no link, no known period, or no live subscription."""
    REQUEST = "request"
    """Both bounds were given."""


@dataclass(frozen=True)
class PeriodTotals:
    """Each metric's billed quantity over a period, and how completely the period was measured.

    A metric measured in no window of the period has no total, never a total of 0.
    """

    since: datetime
    until: datetime
    totals: list[MetricTotal]
    incomplete: IncompleteWindows
    period_source: PeriodSource = PeriodSource.REQUEST

    @property
    def complete(self) -> bool:
        return self.incomplete.complete


def encode_cursor(row: ReportRow) -> str:
    raw = f"{row.window_end.isoformat()}|{row.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


MAX_ROW_ID = 2**63 - 1


def bounded_utc(value: datetime, field: str) -> datetime:
    """``value`` in UTC, refused (422) outside 2000-2100 rather than overflowing."""
    try:
        moment = as_utc(value)
    except OverflowError as exc:
        raise ValidationFailed(
            f"{field} must be a time between 2000 and 2100", field=field
        ) from exc
    if not EARLIEST <= moment < LATEST:
        raise ValidationFailed(f"{field} must be a time between 2000 and 2100", field=field)
    return moment


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        end_text, id_text = base64.urlsafe_b64decode(padded).decode().split("|", 1)
        end, row_id = bounded_utc(datetime.fromisoformat(end_text), "cursor"), int(id_text)
    except (ValueError, OverflowError, UnicodeDecodeError, binascii.Error) as exc:
        raise ValidationFailed("cursor is not one this API returned", field="cursor") from exc
    if not 0 <= row_id <= MAX_ROW_ID:
        raise ValidationFailed("cursor is not one this API returned", field="cursor")
    return end, row_id


STRIPE_MAX_AGE = timedelta(days=35)


class UsageService:
    def __init__(
        self,
        store: ReportStore,
        catalogue: MetricCatalogue,
        clock: Clock,
        *,
        max_limit: int,
        links: LinkStore | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._catalogue = catalogue
        self._max_limit = max_limit
        self._links = links

    async def history(
        self,
        customer_id: str,
        *,
        limit: int,
        cursor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> HistoryPage:
        """A page of reports, newest window first; ``next_cursor`` continues it."""
        if not 1 <= limit <= self._max_limit:
            raise ValidationFailed(f"limit must be between 1 and {self._max_limit}", field="limit")
        start = bounded_utc(since, "since") if since else None
        end = bounded_utc(until, "until") if until else None
        if start is not None and end is not None and end <= start:
            raise ValidationFailed("until must be after since", field="until")
        query = HistoryQuery(
            customer_id=customer_id,
            limit=limit + 1,
            since=start,
            until=end,
            before=decode_cursor(cursor) if cursor else None,
        )
        rows = await self._store.history(query)
        page = rows[:limit]
        more = len(rows) > limit
        return HistoryPage(page, encode_cursor(page[-1]) if more and page else None)

    async def latest(self, customer_id: str) -> ReportRow:
        rows = await self._store.history(HistoryQuery(customer_id=customer_id, limit=1))
        if not rows:
            raise NotFound(f"no usage reports for customer {customer_id!r}", field="customer_id")
        return rows[0]

    async def totals(
        self, customer_id: str, since: datetime | None = None, until: datetime | None = None
    ) -> PeriodTotals:
        """Each metric's billed quantity over windows ending in ``(since, until]``.

        Instances combine as Stripe bills them: device counts add up per instance's newest
        value, storage peaks are the peak of the sum. A bound not given comes from
        ``current_period``: the customer's billing period, else the UTC calendar month.
        Windows that did not measure a metric (a failed source, or no sample) are counted per
        metric, so an incomplete period is never read as a measured one.
        """
        source = PeriodSource.REQUEST
        start = bounded_utc(since, "since") if since else None
        end = bounded_utc(until, "until") if until else None
        reach = timedelta(0)
        if start is None or end is None:
            period, source, first = await self.current_period(customer_id, self._clock.now())
            if first and start is None:
                # Windows before the subscription's first period are billed in it.
                reach = STRIPE_MAX_AGE
            start = start or period.start
            end = end or period.end
        if end <= start:
            raise ValidationFailed("until must be after since", field="until")
        rows = await self._store.in_period(customer_id, start - reach, end)
        incomplete = await self._store.incomplete_in_period(customer_id, start - reach, end)
        totals = []
        for name in self._catalogue.names:
            definition = self._catalogue[name]
            windows = [
                InstanceWindow(
                    row.instance_id,
                    row.window_start,
                    row.window_end,
                    Decimal(str(row.metrics[name])),
                    row.id,
                )
                for row in rows
                if name in row.metrics
            ]
            folded = combine(definition.semantics, windows)
            if folded is not None:
                totals.append(
                    MetricTotal(
                        name,
                        definition.semantics.value,
                        definition.unit,
                        folded,
                        len(windows),
                        incomplete.by_metric.get(name, 0),
                    )
                )
        return PeriodTotals(start, end, totals, incomplete, source)

    async def current_period(
        self, customer_id: str, moment: datetime
    ) -> tuple[Window, PeriodSource, bool]:
        """The period containing ``moment`` by the billing rule ``/reconcile`` follows.

        A linked customer's period is the current link's period billing ``moment`` (past the
        last known one, the latest known). The flag is true for the subscription's first
        period, which also bills the windows of the 35 days before it. Without a link, a known
        period or a live subscription, the UTC calendar month.
        """
        link = await self._links.get(customer_id) if self._links is not None else None
        if link is not None and self._links is not None:
            periods = await self._links.periods(customer_id, link)
            period = resolve(moment, link, periods) or (periods[-1] if periods else None)
            # a link without a live subscription bills by calendar month (a period with no
            # subscription id): the same month as below
            if period is not None and period.subscription_id:
                first = period.start == periods[0].start
                return Window(period.start, period.end), PeriodSource.SUBSCRIPTION, first
        return calendar_month(moment), PeriodSource.CALENDAR, False

    async def incomplete(
        self, customer_id: str, start: datetime, end: datetime
    ) -> IncompleteWindows:
        """The reports with windows ending in ``(start, end]`` that were not measured in full."""
        return await self._store.incomplete_in_period(customer_id, start, end)
