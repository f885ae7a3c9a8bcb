"""What operators see of forwarding: counts, lag, dead letters, and retrying them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from collector.adapters.db.corrections import Ageing, CorrectionStore, Rebilled
from collector.adapters.db.links import LinkStore
from collector.adapters.db.outbox import OutboxStore, RefusedAsTooOld
from collector.adapters.db.tables import BatchRow
from collector.errors import Conflict, NotFound
from collector.services.ageing import AgeingWatch
from collector.services.batching import event_time
from collector.services.customers import Unbillable
from collector.services.periods import resolve
from collector.services.subscriptions import SubscriptionItems
from collector.settings import CollectorSettings
from common.clock import Clock

log = structlog.get_logger("collector.forwarding")
UNLINKED_LISTED = 50
"""The status page lists at most this many unlinked customers, oldest waiting first."""


@dataclass(frozen=True)
class Waiting:
    """A customer whose usage cannot be billed yet, and why."""

    customer_id: str
    oldest_window_end: datetime
    reason: str


@dataclass(frozen=True)
class Unlinked:
    """A customer whose usage waits because it is not linked to a Stripe customer."""

    customer_id: str
    forwards: int
    oldest_window_end: datetime
    waiting_seconds: float


@dataclass(frozen=True)
class ForwardingStatus:
    mode: str
    enabled: bool
    forwards: dict[str, int]
    batches: dict[str, int]
    oldest_waiting: datetime | None
    lag_seconds: float | None
    calls_saved: int
    ageing: list[Ageing] = field(default_factory=list)
    waiting: list[Waiting] = field(default_factory=list)
    customers_unbilled: dict[str, int] = field(default_factory=dict)
    unlinked_customers: list[Unlinked] = field(default_factory=list)


class ForwardingStatusService:
    def __init__(
        self,
        settings: CollectorSettings,
        outbox: OutboxStore,
        links: LinkStore,
        clock: Clock,
        items: SubscriptionItems | None = None,
        corrections: CorrectionStore | None = None,
        watch: AgeingWatch | None = None,
    ) -> None:
        self._items = items
        self._corrections = corrections
        self._watch = watch
        self._settings = settings
        self._outbox = outbox
        self._links = links
        self._clock = clock

    async def status(self) -> ForwardingStatus:
        counts = await self._outbox.counts()
        oldest = await self._outbox.oldest_waiting()
        lag = (self._clock.now() - oldest).total_seconds() if oldest else None
        settled = counts["forwards"].get("sent", 0) + counts["forwards"].get("superseded", 0)
        calls = counts["batches"].get("sent", 0)
        queue = await self._outbox.queue_snapshot()
        return ForwardingStatus(
            mode=self._settings.stripe_mode.value,
            enabled=self._settings.stripe_api_key is not None
            and self._settings.stripe_mode.value != "off",
            forwards=counts["forwards"],
            batches=counts["batches"],
            oldest_waiting=oldest,
            lag_seconds=lag,
            calls_saved=max(0, settled - calls),
            ageing=await self.ageing(),
            waiting=await self.waiting(),
            customers_unbilled=queue.customers_by_reason,
            unlinked_customers=await self.unlinked() if queue.unlinked_customers else [],
        )

    async def unlinked(self, limit: int = UNLINKED_LISTED) -> list[Unlinked]:
        """Customers whose usage waits without a link, with how much and since when."""
        now = self._clock.now()
        return [
            Unlinked(
                c.customer_id,
                c.forwards,
                c.oldest_window_end,
                max(0.0, (now - c.oldest_window_end).total_seconds()),
            )
            for c in await self._outbox.unlinked_customers(limit)
        ]

    async def waiting(self) -> list[Waiting]:
        """Customers whose oldest waiting usage has no billing period to go to yet."""
        found = []
        for customer_id, oldest in await self._outbox.oldest_waiting_by_customer():
            link = await self._links.get(customer_id)
            if link is None:
                found.append(
                    Waiting(
                        customer_id,
                        oldest,
                        "not linked to Stripe: `usage-collector customers link` or a "
                        "subscription webhook",
                    )
                )
                continue
            periods = await self._links.periods(customer_id, link)
            if resolve(event_time(oldest), link, periods) is not None:
                continue
            if link.subscription_id is None:
                reason = (
                    "the subscription was not read yet (Stripe unreachable or no API key); the "
                    "forwarder reads it every COLLECTOR_STRIPE_PERIOD_REFRESH seconds"
                )
            else:
                last_end = max((p.end for p in periods), default=None)
                reason = (
                    f"no billing period known after {last_end.isoformat() if last_end else '-'}; "
                    "waiting for the renewal webhook or the forwarder's own read"
                )
            found.append(Waiting(customer_id, oldest, reason))
        return found

    async def unbillable(self) -> list[Unbillable]:
        """The waiting customers as the customers view names them."""
        return [Unbillable(w.customer_id, w.reason) for w in await self.waiting()]

    async def ageing(self) -> list[Ageing]:
        """Waiting usage that nears (or passed) Stripe's 35-day limit on event timestamps."""
        return await self._watch.ageing() if self._watch is not None else []

    async def rebill(
        self, *, actor: str, batch_id: int | None = None, customer_id: str | None = None
    ) -> list[Rebilled]:
        """Bill usage Stripe refused as too old into the customer's current period, audited."""
        if self._corrections is None:
            raise Conflict("corrections are not available", field="batch_id")
        if batch_id is None and customer_id is None:
            raise Conflict("name a batch or a customer to rebill", field="batch_id")
        if batch_id is not None:
            row = await self._corrections.dead_batch(batch_id)
            if row is None:
                raise NotFound(f"no batch {batch_id}", field="batch_id")
            if row.semantics != "increment":
                raise Conflict(
                    f"batch {batch_id} carries a {row.semantics} value of a past period; a device "
                    "count or a peak belongs to its own period and cannot be billed in another",
                    field="batch_id",
                )
            if row.state != "dead" or row.dead_reason != "too_old":
                raise Conflict(
                    f"batch {batch_id} is {row.state}; only batches Stripe refused as older than "
                    "35 days are rebilled (others: POST .../retry)",
                    field="batch_id",
                )
        done = await self._corrections.rebill(
            actor, self._clock.now(), batch_id=batch_id, customer_id=customer_id
        )
        for record in done:
            log.warning(
                "aged usage rebilled into the current period",
                batch=record.batch_id,
                customer_id=record.customer_id,
                metric=record.metric,
                quantity=record.quantity,
                by=actor,
            )
        return done

    async def audit(self, customer_id: str | None, limit: int) -> list[Any]:
        if self._corrections is None:
            return []
        return await self._corrections.audit_log(customer_id, limit)

    async def batches(
        self, state: str | None, customer_id: str | None, limit: int
    ) -> list[BatchRow]:
        return await self._outbox.batches(state, customer_id, limit)

    async def retry(self, batch_id: int) -> BatchRow:
        """Send a dead-lettered batch again, same identifier and members."""
        try:
            batch = await self._outbox.retry_dead(batch_id, self._clock.now())
        except RefusedAsTooOld:
            raise
        except Exception as exc:
            raise Conflict(str(exc), field="batch_id") from exc
        if batch is None:
            raise NotFound(f"no dead-lettered batch {batch_id}", field="batch_id")
        return batch

    @property
    def subscription_reader(self) -> SubscriptionItems | None:
        """Reads subscriptions from Stripe; None while no API key is configured."""
        return self._items
