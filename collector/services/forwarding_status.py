"""What operators see of forwarding: counts, lag, dead letters, and retrying them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from collector.adapters.db.links import LinkStore
from collector.adapters.db.outbox import OutboxStore
from collector.adapters.db.tables import BatchRow
from collector.errors import Conflict, NotFound
from collector.services.subscriptions import SubscriptionItems, link_customer
from collector.settings import CollectorSettings
from common.clock import Clock


@dataclass(frozen=True)
class ForwardingStatus:
    mode: str
    enabled: bool
    forwards: dict[str, int]
    batches: dict[str, int]
    oldest_waiting: datetime | None
    lag_seconds: float | None
    calls_saved: int


class ForwardingStatusService:
    def __init__(
        self,
        settings: CollectorSettings,
        outbox: OutboxStore,
        links: LinkStore,
        clock: Clock,
        items: SubscriptionItems | None = None,
    ) -> None:
        self._items = items
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
        return ForwardingStatus(
            mode=self._settings.stripe_mode.value,
            enabled=self._settings.stripe_api_key is not None
            and self._settings.stripe_mode.value != "off",
            forwards=counts["forwards"],
            batches=counts["batches"],
            oldest_waiting=oldest,
            lag_seconds=lag,
            calls_saved=max(0, settled - calls),
        )

    async def batches(
        self, state: str | None, customer_id: str | None, limit: int
    ) -> list[BatchRow]:
        return await self._outbox.batches(state, customer_id, limit)

    async def retry(self, batch_id: int) -> BatchRow:
        """Send a dead-lettered batch again, same identifier and members."""
        try:
            batch = await self._outbox.retry_dead(batch_id, self._clock.now())
        except Exception as exc:
            raise Conflict(str(exc), field="batch_id") from exc
        if batch is None:
            raise NotFound(f"no dead-lettered batch {batch_id}", field="batch_id")
        return batch

    async def link(self, customer_id: str, stripe_customer_id: str) -> None:
        await link_customer(self._links, self._clock, customer_id, stripe_customer_id, self._items)
