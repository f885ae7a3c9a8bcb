"""The sender for the configured mode (the Stripe client built once) and the Stripe limiter."""

from __future__ import annotations

import stripe

from collector.adapters.db.links import LinkStore
from collector.adapters.db.rate_buckets import RateBucketStore
from collector.adapters.stripe.client import StripeConnection, build_client
from collector.adapters.stripe.meter_event_stream import MeterEventStreamSender
from collector.adapters.stripe.meter_events import MeterEventsSender
from collector.adapters.stripe.usage_records import UsageRecordsSender
from collector.errors import StripeNotConfigured
from collector.services.forwarder import Sender
from collector.services.ratelimit import CallLimiter, RateLimiter, SharedRateLimiter
from collector.services.subscriptions import SubscriptionItems
from collector.settings import CollectorSettings, StripeMode
from common.clock import Clock


def stripe_connection(settings: CollectorSettings) -> StripeConnection:
    key = settings.stripe_api_key.get_secret_value() if settings.stripe_api_key else None
    return build_client(key, settings.stripe_api_base, timeout=settings.stripe_timeout)


def make_sender(
    settings: CollectorSettings, client: stripe.StripeClient, links: LinkStore, clock: Clock
) -> Sender:
    """The sender for ``COLLECTOR_STRIPE_MODE``; ``off`` has none."""
    mode = settings.stripe_mode
    if mode is StripeMode.METER_EVENTS:
        return MeterEventsSender(client)
    if mode is StripeMode.METER_EVENT_STREAM:
        return MeterEventStreamSender(
            client, clock, api_base=settings.stripe_api_base, timeout=settings.stripe_timeout
        )
    if mode is StripeMode.USAGE_RECORDS:
        return UsageRecordsSender(client, SubscriptionItems(client, links, clock).resolve)
    raise StripeNotConfigured("COLLECTOR_STRIPE_MODE is off: usage is stored, not forwarded")


def make_limiter(
    settings: CollectorSettings,
    shared: RateBucketStore | None,
    clock: Clock,
    *,
    database_clock: bool = True,
) -> CallLimiter:
    """``COLLECTOR_STRIPE_MAX_RPS`` for every replica together, or for this process on SQLite."""
    if shared is None:
        return RateLimiter(settings.stripe_max_rps, clock)
    return SharedRateLimiter(
        shared,
        settings.stripe_max_rps,
        clock,
        lease=settings.call_slot_lease,
        database_clock=database_clock,
    )
