"""Reconciliation and invoice preview: the collector's view of a period beside Stripe's.

Each metric's comparison is exact; whether a difference is drift or usage still settling is
decided by ``collector.services.drift``. Every Stripe read passes the optional limiter (the
background reconciler's ``COLLECTOR_RECONCILE_MAX_RPS``): the meter list, when it is not cached,
and one summary per metric.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import stripe

from collector.adapters.db.customer_view import CustomerViewStore, ReconcileRecord
from collector.adapters.db.links import Link, LinkStore
from collector.adapters.db.outbox import OutboxStore
from collector.adapters.stripe.catalog import StripeCatalog
from collector.adapters.stripe.client import LEGACY_API_VERSION, translate
from collector.adapters.stripe.subscriptions import as_dict
from collector.errors import CustomerNotLinked, StripeNotConfigured
from collector.services.combination import combine
from collector.services.drift import IN_SYNC, customer_state, metric_state
from collector.services.periods import resolve
from collector.services.planning import as_window
from collector.services.ratelimit import CallLimiter
from collector.services.usage import UsageService
from collector.settings import StripeMode
from common.catalogue import MetricCatalogue
from common.clock import Clock
from common.windows import Window, calendar_month

MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class MetricReconciliation:
    metric: str
    semantics: str
    collector_value: Decimal | None
    collector_billable: int | None
    delivered: int | None
    stripe_value: Decimal | None
    in_sync: bool
    incomplete_windows: int = 0
    """Windows of the period whose report lists this metric as missing or unmeasured."""
    waiting: int = 0
    """Forwards of this metric Stripe has not acknowledged yet."""
    last_sent_at: datetime | None = None
    """When Stripe last acknowledged a batch of this metric."""
    state: str = IN_SYNC
    """in_sync, settling or drifting (``collector.services.drift``)."""

    @property
    def difference(self) -> Decimal:
        """Stripe's value minus the collector's billable quantity, a missing side as 0."""
        return (self.stripe_value or Decimal(0)) - Decimal(self.collector_billable or 0)


@dataclass(frozen=True)
class Reconciliation:
    customer_id: str
    stripe_customer_id: str
    period: Window
    metrics: list[MetricReconciliation]
    pending_forwards: int
    incomplete_windows: int = 0
    """Reports of the period that are partial or list a metric as unmeasured."""
    checked_at: datetime | None = None

    @property
    def in_sync(self) -> bool:
        return all(m.in_sync for m in self.metrics)

    @property
    def state(self) -> str:
        return customer_state(m.state for m in self.metrics)

    @property
    def complete(self) -> bool:
        """Every window of the period measured every metric (in sync says nothing about it)."""
        return self.incomplete_windows == 0


def record_of(result: Reconciliation, checked_at: datetime) -> ReconcileRecord:
    """A current-period result as the customer's latest reconcile state, every metric listed."""
    drift: dict[str, Any] = {
        m.metric: {
            "collector": m.collector_billable,
            "stripe": None if m.stripe_value is None else str(m.stripe_value),
            "difference": str(m.difference),
            "state": m.state,
            "waiting": m.waiting,
        }
        for m in result.metrics
    }
    return ReconcileRecord(
        customer_id=result.customer_id,
        checked_at=checked_at,
        stripe_customer_id=result.stripe_customer_id,
        period_start=result.period.start,
        period_end=result.period.end,
        in_sync=result.in_sync,
        drift={"metrics": drift, "pending_forwards": result.pending_forwards},
        state=result.state,
    )


def _floor_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def _ceil_minute(moment: datetime) -> datetime:
    floored = _floor_minute(moment)
    return floored if floored == moment else floored + MINUTE


class ReconcileService:
    def __init__(
        self,
        client: stripe.StripeClient | None,
        mode: StripeMode,
        links: LinkStore,
        outbox: OutboxStore,
        usage: UsageService,
        catalogue: MetricCatalogue,
        clock: Clock,
        results: CustomerViewStore | None = None,
        *,
        settle: timedelta = timedelta(0),
        limiter: CallLimiter | None = None,
        meters_ttl: float = 0.0,
    ) -> None:
        """``settle``: how long a difference may follow a delivery before it is drift.
        ``limiter``: held around every Stripe read. ``meters_ttl``: seconds the meter list is
        reused (0: read for every reconcile)."""
        self._results = results
        self._settle = settle
        self._limiter = limiter
        self._meters_ttl = meters_ttl
        self._meters: tuple[float, dict[str, dict[str, Any]]] | None = None
        self._client = client
        self._mode = mode
        self._links = links
        self._outbox = outbox
        self._usage = usage
        self._catalogue = catalogue
        self._clock = clock

    def _read(self) -> AbstractAsyncContextManager[None]:
        """One Stripe read's slot under the limiter, if there is one."""
        return self._limiter.slot() if self._limiter is not None else contextlib.nullcontext()

    async def _active_meters(self, client: stripe.StripeClient) -> dict[str, dict[str, Any]]:
        now = self._clock.monotonic()
        if self._meters is not None and now - self._meters[0] < self._meters_ttl:
            return self._meters[1]
        async with self._read():
            meters = await StripeCatalog(client).meters()
        if self._meters_ttl > 0:
            self._meters = (now, meters)
        return meters

    def _stripe(self) -> stripe.StripeClient:
        if self._client is None:
            raise StripeNotConfigured("COLLECTOR_STRIPE_API_KEY is not set")
        return self._client

    async def _link(self, customer_id: str) -> Link:
        link = await self._links.get(customer_id)
        if link is None:
            raise CustomerNotLinked(
                f"customer {customer_id!r} is not linked to Stripe", field="customer_id"
            )
        return link

    async def reconcile(self, customer_id: str, at: datetime | None = None) -> Reconciliation:
        """One billing period's totals per metric: billed by the collector, delivered, in Stripe.

        The period is the current link's period containing ``at`` (default: now). The
        collector's side combines the windows billed in that period (every instance, carried
        device counts, rebilled usage), independently of what was sent. Completeness counts the
        customer's reports whose window ends in the period, ``(start, end]``, the rule ``/totals``
        uses too: a window with nothing measured has no forward to find it by.
        """
        link = await self._link(customer_id)
        client = self._stripe()
        moment = at or self._clock.now()
        period_id, period = await self._period(customer_id, link, moment)
        if period_id is not None:
            billed = await self._outbox.billed_in(period_id)
            stored = {
                name: combine(self._catalogue[name].semantics, [as_window(f) for f in forwards])
                for name, forwards in billed.items()
                if name in self._catalogue
            }
            incomplete = await self._usage.incomplete(customer_id, period.start, period.end)
        else:
            totals = await self._usage.totals(customer_id, period.start, period.end)
            stored = {t.name: t.value for t in totals.totals}
            incomplete = totals.incomplete
        meters = {} if self._mode is StripeMode.USAGE_RECORDS else await self._active_meters(client)
        deliveries = await self._outbox.deliveries(customer_id)
        rows = []
        for name in self._catalogue.names:
            definition = self._catalogue[name]
            value = stored.get(name)
            billable = definition.to_billable(value) if value is not None else None
            state = await self._outbox.state(period_id, name) if period_id is not None else None
            if self._mode is StripeMode.USAGE_RECORDS:
                remote = await self._legacy_total(client, customer_id, definition.price_lookup_key)
            else:
                meter = meters.get(definition.meter_event_name)
                remote = (
                    await self._meter_total(client, meter, link.stripe_customer_id, period)
                    if meter
                    else None
                )
            expected = Decimal(billable) if billable is not None else None
            in_sync = (remote or Decimal(0)) == (expected or Decimal(0))
            delivery = deliveries.get(name)
            waiting = delivery.waiting if delivery else 0
            last_sent = delivery.last_sent_at if delivery else None
            rows.append(
                MetricReconciliation(
                    name,
                    definition.semantics.value,
                    value,
                    billable,
                    state.billed_total if state else None,
                    remote,
                    in_sync,
                    incomplete.by_metric.get(name, 0),
                    waiting,
                    last_sent,
                    metric_state(in_sync, waiting, last_sent, moment, self._settle),
                )
            )
        pending = await self._outbox.waiting_for(customer_id)
        result = Reconciliation(
            customer_id, link.stripe_customer_id, period, rows, pending, incomplete.reports, moment
        )
        if at is None and self._results is not None:
            await self._results.record_reconcile(record_of(result, moment))
        return result

    async def _period(
        self, customer_id: str, link: Link, moment: datetime
    ) -> tuple[int | None, Window]:
        """The period billing ``moment`` (the latest known one past the last); a calendar
        month when none is stored yet."""
        periods = await self._links.periods(customer_id, link)
        period = resolve(moment, link, periods) or (periods[-1] if periods else None)
        if period is None:
            return None, calendar_month(moment)
        return period.id, Window(period.start, period.end)

    async def _meter_total(
        self,
        client: stripe.StripeClient,
        meter: dict[str, Any],
        stripe_customer: str,
        period: Window,
    ) -> Decimal:
        try:
            async with self._read():
                page = await client.v1.billing.meters.event_summaries.list_async(
                    meter["id"],
                    {
                        "customer": stripe_customer,
                        "start_time": int(_floor_minute(period.start).timestamp()),
                        "end_time": int(_ceil_minute(period.end).timestamp()),
                    },
                )
        except stripe.StripeError as exc:
            raise translate(exc) from exc
        summaries = [as_dict(s) for s in page.data]
        return sum((Decimal(str(s.get("aggregated_value", 0))) for s in summaries), Decimal(0))

    async def _legacy_total(
        self, client: stripe.StripeClient, customer_id: str, lookup_key: str
    ) -> Decimal | None:
        item = await self._links.item(customer_id, lookup_key)
        if item is None:
            return None
        try:
            async with self._read():
                response = await client.raw_request_async(
                    "get",
                    f"/v1/subscription_items/{item.subscription_item_id}/usage_record_summaries",
                    stripe_version=LEGACY_API_VERSION,
                )
        except stripe.StripeError as exc:
            raise translate(exc) from exc
        body = client.deserialize(response, api_mode="V1").to_dict()
        data = body.get("data") or []
        return Decimal(str(data[0].get("total_usage", 0))) if data else Decimal(0)

    async def invoice_preview(self, customer_id: str) -> dict[str, Any]:
        """Stripe's preview of the customer's upcoming invoice, metered lines included.

        Each line's price is expanded, so the line carries the price's lookup key (the metric)
        besides Stripe's description, which names the price's product.
        """
        link = await self._link(customer_id)
        client = self._stripe()
        params: dict[str, Any] = {
            "customer": link.stripe_customer_id,
            "expand": ["lines.data.pricing.price_details.price"],
        }
        if link.subscription_id:
            params["subscription"] = link.subscription_id
        try:
            invoice = await client.v1.invoices.create_preview_async(params)  # type: ignore[arg-type]
        except stripe.StripeError as exc:
            raise translate(exc) from exc
        return as_dict(invoice)
