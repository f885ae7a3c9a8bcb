"""The sandbox's in-memory account: objects, received usage, sessions and idempotency records.

Every request first renews due periods (``periods.sync``), which looks at each subscription's
items, and the collector reads subscriptions and meter summaries by customer; with a thousand
subscribed customers, scanning all items or all events per lookup held the sandbox to a few
requests a second. So items are also kept by subscription, subscriptions by customer and meter
events by meter and customer. Those indexes are only right if items, subscriptions and meter
events are added and removed through ``Store``'s methods, never by writing to the dicts and the
list directly.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from typing import Any

from collector.stripe_sandbox.aggregation import MeterEventRecord
from collector.stripe_sandbox.clock import SandboxClock
from collector.stripe_sandbox.webhooks import WebhookDispatcher

_ALPHABET = string.ascii_letters + string.digits
# The API version stamped on snapshot events.
EVENT_API_VERSION = "2026-10-28.endive"


@dataclass
class StoredResponse:
    """A replayable answer to an idempotent POST."""

    fingerprint: tuple[str, str, bytes]
    status: int
    body: Any


@dataclass
class PeriodRecord:
    """A closed billing period of one subscription item."""

    start: int
    end: int
    invoice_id: str | None


@dataclass
class Store:
    """Everything the sandbox remembers; handlers mutate it synchronously on the event loop."""

    clock: SandboxClock
    webhooks: WebhookDispatcher
    seed: int | None = None
    identifier_ttl_seconds: int = 24 * 3600
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    products: dict[str, dict[str, Any]] = field(default_factory=dict)
    prices: dict[str, dict[str, Any]] = field(default_factory=dict)
    meters: dict[str, dict[str, Any]] = field(default_factory=dict)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    thin_events: dict[str, dict[str, Any]] = field(default_factory=dict)
    meter_events: list[MeterEventRecord] = field(default_factory=list)
    identifiers: dict[str, int] = field(default_factory=dict)
    usage: dict[str, dict[int, int]] = field(default_factory=dict)
    usage_log: list[dict[str, Any]] = field(default_factory=list)
    closed_periods: dict[str, list[PeriodRecord]] = field(default_factory=dict)
    sessions: dict[str, int] = field(default_factory=dict)
    idempotency: dict[str, StoredResponse] = field(default_factory=dict)
    stream_rejections: list[dict[str, Any]] = field(default_factory=list)
    payment_failures: set[str] = field(default_factory=set)
    items_by_subscription: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    subscriptions_by_customer: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    meter_events_by_customer: dict[tuple[str, str], list[MeterEventRecord]] = field(
        default_factory=dict
    )
    renew_after: float = 0.0
    """No live subscription's period ends before this time (``periods.sync`` keeps it); 0 when
    an added or removed item may have changed that."""
    _seq: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def now(self) -> int:
        return self.clock.timestamp()

    def new_id(self, prefix: str, length: int = 24) -> str:
        return f"{prefix}_" + "".join(self._rng.choice(_ALPHABET) for _ in range(length))

    def token(self, length: int = 8) -> str:
        return "".join(self._rng.choice(string.hexdigits.upper()[:16]) for _ in range(length))

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def add_subscription(self, subscription: dict[str, Any]) -> None:
        self.subscriptions[subscription["id"]] = subscription
        by_customer = self.subscriptions_by_customer.setdefault(subscription["customer"], {})
        by_customer[subscription["id"]] = subscription

    def subscriptions_of(self, customer_id: str) -> list[dict[str, Any]]:
        """The customer's subscriptions, oldest created first (as in ``subscriptions``)."""
        return list(self.subscriptions_by_customer.get(customer_id, {}).values())

    def add_item(self, item: dict[str, Any]) -> None:
        self.items[item["id"]] = item
        self.items_by_subscription.setdefault(item["subscription"], {})[item["id"]] = item
        self.renew_after = 0.0

    def remove_item(self, item_id: str) -> None:
        item = self.items.pop(item_id, None)
        if item is not None:
            self.items_by_subscription[item["subscription"]].pop(item_id, None)
        self.renew_after = 0.0

    def items_of(self, subscription_id: str) -> list[dict[str, Any]]:
        """The subscription's items, oldest added first (as in ``items``)."""
        return list(self.items_by_subscription.get(subscription_id, {}).values())

    def add_meter_event(self, event: MeterEventRecord) -> None:
        self.meter_events.append(event)
        key = (event.meter_id, event.customer)
        self.meter_events_by_customer.setdefault(key, []).append(event)
        self.identifiers[event.identifier] = event.received_at

    def drop_meter_events(self, identifiers: set[str]) -> None:
        """Forget accepted events, as Stripe's asynchronous processing failing them does."""
        self.meter_events[:] = [e for e in self.meter_events if e.identifier not in identifiers]
        for events in self.meter_events_by_customer.values():
            events[:] = [e for e in events if e.identifier not in identifiers]

    def meter_events_of(self, meter_id: str, customer_id: str) -> list[MeterEventRecord]:
        """One customer's events on one meter, in the order they were accepted."""
        return self.meter_events_by_customer.get((meter_id, customer_id), [])

    def reset(self) -> None:
        """Forget every object and received event; keeps the clock and webhook settings."""
        fresh = Store(self.clock, self.webhooks, self.seed, self.identifier_ttl_seconds)
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(fresh, name))
        self._rng = fresh._rng

    def emit(
        self,
        event_type: str,
        data_object: dict[str, Any],
        *,
        previous_attributes: dict[str, Any] | None = None,
        request_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Record a snapshot event and queue its signed webhook delivery."""
        from collector.stripe_sandbox import billing_objects

        event = billing_objects.event(
            self.new_id("evt"),
            created=self.now(),
            event_type=event_type,
            data_object=data_object,
            previous_attributes=previous_attributes,
            api_version=EVENT_API_VERSION,
            request_id=request_id,
            idempotency_key=idempotency_key,
        )
        self.events[event["id"]] = event
        self.webhooks.enqueue(event)
        return event

    def emit_thin(
        self, event_type: str, related_object: dict[str, Any] | None, data: dict[str, Any]
    ) -> dict[str, Any]:
        """Record a v2 thin event; the notification omits ``data``, fetched via /v2/core/events."""
        created = self.clock.now().isoformat(timespec="milliseconds").replace("+00:00", "Z")
        notification: dict[str, Any] = {
            "context": None,
            "created": created,
            "id": self.new_id("evt", 20),
            "livemode": False,
            "object": "v2.core.event",
            "reason": None,
            "type": event_type,
        }
        if related_object is not None:
            notification["related_object"] = related_object
        self.thin_events[notification["id"]] = {**notification, "data": data}
        self.webhooks.enqueue(notification)
        return notification
