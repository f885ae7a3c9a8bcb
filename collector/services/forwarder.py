"""The outbox worker: forms batches, sends them to Stripe, settles them once Stripe answered.

Exactly-once rests on three things: a batch and its identifier are stored before the first send;
a resend after a crash or a timeout carries the same identifier, which Stripe deduplicates; and a
batch is marked sent only after Stripe acknowledged it (a duplicate-identifier answer counts).

Replicas share the work through leases: a worker sends only batches it claimed, keeps their
leases renewed while their calls are in flight, and gives a call up before its lease can lapse
(``collector.services.leases``). So one replica at a time sends a batch, unless a call it gave
up still reaches Stripe late; then the identifier makes the second copy harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

import structlog

from collector.adapters.db.links import Link, LinkStore
from collector.adapters.db.outbox import (
    MeterState,
    OutboxStore,
)
from collector.adapters.db.tables import BatchRow
from collector.adapters.stripe.client import Delivered, OutgoingEvent
from collector.errors import StripePermanent, StripeTransient
from collector.services.leases import LeaseKeeper
from collector.services.planning import BatchPlanner
from collector.services.ratelimit import CallLimiter, RateLimiter
from collector.telemetry import CollectorMetrics
from common.catalogue import MetricCatalogue
from common.clock import Clock
from common.semantics import Semantics

log = structlog.get_logger("collector.forwarder")
STRIPE_PAST_LIMIT = timedelta(days=35) - timedelta(minutes=1)


class Sender(Protocol):
    mode: str
    max_events: int

    async def send(self, events: Sequence[OutgoingEvent]) -> list[Delivered | Exception]: ...


@dataclass(frozen=True)
class ForwarderConfig:
    mode: str
    max_rps: float = 20.0
    concurrency: int = 4
    coalesce: bool = True
    max_members: int = 500
    groups_per_round: int = 200
    lease: timedelta = timedelta(seconds=15)
    lease_renewal: timedelta = timedelta(seconds=5)
    release_leases_on_start: bool = False
    backoff_base: float = 1.0
    backoff_cap: float = 300.0
    unlinked_wait: timedelta = timedelta(seconds=60)
    idle_sleep: float = 1.0
    period_refresh: timedelta = timedelta(seconds=300)
    period_recheck: timedelta = timedelta(seconds=30)


class PeriodReader(Protocol):
    """Reads a customer's subscription from Stripe and stores its billing periods."""

    async def refresh(self, customer_id: str, *, actor: str = ...) -> object: ...


def backoff_seconds(
    attempts: int, base: float, cap: float, rng: random.Random, retry_after: float | None
) -> float:
    """Capped exponential backoff with full jitter, never shorter than Stripe's Retry-After."""
    delay = rng.uniform(0, min(cap, base * (2 ** min(attempts, 30))))
    return max(delay, retry_after or 0.0)


def log_dead(batch: BatchRow, reason: str, status: int | None, detail: str) -> None:
    """``batch_dead``: a batch parked for an operator, with Stripe's message."""
    log.warning(
        "batch_dead",
        batch=batch.id,
        customer_id=batch.customer_id,
        stripe_customer_id=batch.stripe_customer_id,
        metric=batch.metric,
        quantity=batch.quantity,
        identifier=batch.identifier,
        reason=reason,
        status=status,
        error=detail,
        attempts=batch.attempts + 1,
    )


def state_after_send(before: MeterState, batch: BatchRow) -> MeterState:
    """The period's delivered state once ``batch`` is acknowledged."""
    raw = Decimal(batch.raw_value)
    newest = max(filter(None, (before.newest_window_end, batch.newest_window_end)))
    if batch.semantics == Semantics.INCREMENT.value:
        raw_total, billed, last = (
            before.raw_total + raw,
            before.billed_total + batch.quantity,
            before.last_value,
        )
    else:
        raw_total, billed, last = raw, batch.quantity, raw
    return MeterState(
        before.period_id,
        before.customer_id,
        before.metric,
        batch.period_start,
        batch.period_end,
        raw_total,
        billed,
        last,
        newest,
        batch.event_timestamp,
        before.calls + 1,
    )


class Forwarder:
    def __init__(
        self,
        outbox: OutboxStore,
        links: LinkStore,
        sender: Sender,
        catalogue: MetricCatalogue,
        clock: Clock,
        metrics: CollectorMetrics,
        config: ForwarderConfig,
        *,
        rng: random.Random | None = None,
        owner: str | None = None,
        periods: PeriodReader | None = None,
        limiter: CallLimiter | None = None,
        leads: Callable[[], bool] | None = None,
    ) -> None:
        self._periods = periods
        self._leads = leads
        self._waiting: dict[str, datetime] = {}
        self._planner = BatchPlanner(
            catalogue, clock, metrics, mode=config.mode, coalesce=config.coalesce
        )
        self._semantics = {n: catalogue[n].semantics.value for n in catalogue.names}
        self._outbox = outbox
        self._links = links
        self._sender = sender
        self._catalogue = catalogue
        self._clock = clock
        self._metrics = metrics
        self._config = config
        self._rng = rng or random.Random()
        self._owner = owner or f"forwarder-{uuid.uuid4().hex[:12]}"
        self._limiter = limiter or RateLimiter(config.max_rps, clock)
        self._leases = LeaseKeeper(
            outbox,
            self._owner,
            clock,
            lease=config.lease.total_seconds(),
            renew_every=config.lease_renewal.total_seconds(),
        )

    @property
    def leases(self) -> LeaseKeeper:
        """The leases of the batches this worker is sending; ``run`` keeps them renewed."""
        return self._leases

    async def aclose(self) -> None:
        """Release what the sender holds (e.g. a meter event stream session client)."""
        close = getattr(self._sender, "aclose", None)
        if close is not None:
            await close()

    async def run(self, stop: asyncio.Event) -> None:
        """Forward until ``stop`` is set; errors are logged and retried, never fatal."""
        log.info(
            "forwarder started",
            mode=self._config.mode,
            max_rps=self._config.max_rps,
            owner=self._owner,
        )
        if self._config.release_leases_on_start:
            released = await self._outbox.release_leases()
            if released:
                log.info("released leases of a previous worker", batches=released)
        keeper = asyncio.create_task(self._leases.run(stop))
        while not stop.is_set():
            try:
                busy = await self.step()
            except Exception as exc:
                log.warning(
                    "forwarder round failed", error=type(exc).__name__, detail=str(exc)[:300]
                )
                busy = 0
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self._config.idle_sleep)
        await keeper
        log.info("forwarder stopped", owner=self._owner)

    async def step(self) -> int:
        """One round: form what can be formed, send what is due. Returns how much work it did."""
        formed = await self.form_batches()
        sent = await self.deliver_due()
        return formed + sent

    async def drain(self, max_rounds: int = 10_000) -> None:
        """Step until nothing is left to do now (tests and the demo use it)."""
        for _ in range(max_rounds):
            if not await self.step():
                return

    async def form_batches(self) -> int:
        now = self._clock.now()
        self._waiting = {c: t for c, t in self._waiting.items() if t > now}
        groups = await self._outbox.groups_to_form(
            self._config.groups_per_round, exclude=self._waiting
        )
        outcomes, blocked = await self._outbox.form(
            groups,
            self._planner,
            self._semantics,
            max_members=self._config.max_members,
            now=now,
        )
        for customer_id in sorted(blocked):
            await self._await_period(customer_id, now)
        return len(outcomes)

    async def _await_period(self, customer_id: str, now: datetime) -> None:
        """Usage waits for a billing period; read the subscription if nobody has lately."""
        self._waiting[customer_id] = now + self._config.period_recheck
        if self._leads is not None and not self._leads():
            return  # the leading replica reads subscriptions, once for all of them
        link = await self._links.get(customer_id)
        if link is None or self._periods is None:
            return
        if link.checked_at is not None and now - link.checked_at < self._config.period_refresh:
            return
        await self._links.checked(customer_id, now)
        try:
            await self._periods.refresh(customer_id, actor="forwarder")
        except (StripeTransient, StripePermanent) as exc:
            log.warning(
                "cannot read the subscription; usage waits for its billing period",
                customer_id=customer_id,
                error=exc.detail,
            )
            return
        self._waiting.pop(customer_id, None)
        log.info(
            "read the subscription of a customer waiting for its period", customer_id=customer_id
        )

    async def deliver_due(self) -> int:
        per_call = self._sender.max_events
        claimed_at = self._clock.monotonic()
        batches = await self._outbox.claim_due(
            self._owner, self._clock.now(), self._config.lease, self._config.concurrency * per_call
        )
        if not batches:
            return 0
        self._leases.hold([b.id for b in batches], since=claimed_at)
        try:
            await self._deliver(batches, per_call)
        finally:
            self._leases.release([b.id for b in batches])
        return len(batches)

    async def _deliver(self, batches: list[BatchRow], per_call: int) -> None:
        ready: list[tuple[BatchRow, OutgoingEvent]] = []
        links: dict[str, Link | None] = {}
        for batch in batches:
            if batch.customer_id not in links:
                links[batch.customer_id] = await self._links.get(batch.customer_id)
            event = await self._event_for(batch, links[batch.customer_id])
            if event is not None:
                ready.append((batch, event))
        chunks = [ready[i : i + per_call] for i in range(0, len(ready), per_call)]
        semaphore = asyncio.Semaphore(self._config.concurrency)

        async def deliver(chunk: list[tuple[BatchRow, OutgoingEvent]]) -> None:
            ids = [batch.id for batch, _ in chunk]
            async with semaphore:
                await self._prepare_sender()
                async with self._limiter.slot():
                    results = None
                    if self._leases.kept(ids):
                        call = self._sender.send([event for _, event in chunk])
                        results = await self._leases.guard(ids, call)
                if results is None:
                    self._lease_lost(chunk)
                    return
                await self._settle_chunk(chunk, results)
            self._leases.release(ids)

        await asyncio.gather(*(deliver(chunk) for chunk in chunks))

    def _lease_lost(self, chunk: list[tuple[BatchRow, OutgoingEvent]]) -> None:
        """A call given up (or never started) because this worker could not keep its leases."""
        self._metrics.leases_lost.inc(len(chunk))
        log.warning(
            "batch_lease_lost",
            owner=self._owner,
            batches=[batch.id for batch, _ in chunk],
            identifiers=[batch.identifier for batch, _ in chunk],
            detail="the call was given up before its lease could lapse; another replica "
            "resends it under the same identifier",
        )

    async def _prepare_sender(self) -> None:
        """Calls a sender makes before sending (a stream session) count against the limit too."""
        needs_call = getattr(self._sender, "needs_call_before_send", None)
        if needs_call is not None and needs_call():
            async with self._limiter.slot():
                await self._sender.prepare()  # type: ignore[attr-defined]

    async def _event_for(self, batch: BatchRow, link: Link | None) -> OutgoingEvent | None:
        if link is None:
            await self._outbox.reschedule(
                batch,
                self._owner,
                self._clock.now() + self._config.unlinked_wait,
                None,
                f"customer {batch.customer_id!r} is not linked to a Stripe customer; link it with "
                "`usage-collector customers link` or a subscription webhook",
                count_attempt=False,
            )
            return None
        if batch.event_timestamp <= self._clock.now() - STRIPE_PAST_LIMIT:
            detail = (
                f"timestamp {batch.event_timestamp.isoformat()} is older than Stripe's 35 days; "
                "not sent. Bill it into the current period: POST "
                f"/api/forwarding/batches/{batch.id}/rebill"
            )
            self._metrics.dead_lettered.labels(batch.metric).inc()
            log_dead(batch, "too_old", None, detail)
            await self._outbox.dead_letter(batch, self._owner, None, detail, reason="too_old")
            return None
        definition = self._catalogue[batch.metric]
        return OutgoingEvent(
            identifier=batch.identifier,
            customer_id=batch.customer_id,
            stripe_customer_id=batch.stripe_customer_id or link.stripe_customer_id,
            metric=batch.metric,
            semantics=batch.semantics,
            event_name=definition.meter_event_name,
            lookup_key=definition.price_lookup_key,
            quantity=batch.quantity,
            timestamp=batch.event_timestamp,
        )

    async def _settle_chunk(
        self, sent: list[tuple[BatchRow, OutgoingEvent]], results: list[Delivered | Exception]
    ) -> None:
        """Acknowledge every delivered batch of one call together; handle failures one by one."""
        delivered = [
            (batch, event, result)
            for (batch, event), result in zip(sent, results, strict=True)
            if isinstance(result, Delivered)
        ]
        now = self._clock.now()
        acknowledged = await self._outbox.acknowledge_many(
            [(batch, result.status) for batch, _, result in delivered],
            self._owner,
            now,
            state_after_send,
        )
        for batch, event, result in delivered:
            outcome = "duplicate" if result.duplicate else "ok"
            self._metrics.stripe_calls.labels(self._config.mode, outcome).inc()
            if batch.id in acknowledged:
                self._metrics.forwarded.labels(batch.metric).inc(batch.members)
                self._metrics.forward_lag.observe(
                    max(0.0, (now - batch.created_at).total_seconds())
                )
                log.info(
                    "batch_sent",
                    batch=batch.id,
                    customer_id=batch.customer_id,
                    stripe_customer_id=event.stripe_customer_id,
                    metric=batch.metric,
                    quantity=batch.quantity,
                    identifier=batch.identifier,
                    stripe_id=result.stripe_id,
                    duplicate=result.duplicate,
                    attempts=batch.attempts + 1,
                    windows=batch.members,
                )
        for (batch, _), failure in zip(sent, results, strict=True):
            if not isinstance(failure, Delivered):
                await self._settle(batch, failure)

    async def _settle(self, batch: BatchRow, result: Exception) -> None:
        """A failed call: dead-letter what Stripe refused for good, reschedule the rest."""
        mode = self._config.mode
        now = self._clock.now()
        if isinstance(result, StripePermanent):
            self._metrics.stripe_calls.labels(mode, "rejected").inc()
            self._metrics.dead_lettered.labels(batch.metric).inc()
            reason = "too_old" if result.too_old else "rejected"
            log_dead(batch, reason, result.status, result.detail)
            await self._outbox.dead_letter(
                batch, self._owner, result.status, result.detail, reason=reason
            )
            return
        status = result.status if isinstance(result, StripeTransient) else None
        retry_after = result.retry_after if isinstance(result, StripeTransient) else None
        detail = (
            result.detail if isinstance(result, StripeTransient) else f"{type(result).__name__}"
        )
        self._metrics.stripe_calls.labels(mode, "retry").inc()
        delay = backoff_seconds(
            batch.attempts,
            self._config.backoff_base,
            self._config.backoff_cap,
            self._rng,
            retry_after,
        )
        await self._outbox.reschedule(
            batch, self._owner, now + timedelta(seconds=delay), status, detail
        )
