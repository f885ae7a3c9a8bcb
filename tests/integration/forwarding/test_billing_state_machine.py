"""A state machine over reports, crashes, renewals, relinks and retirements: Stripe stays exact.

Each run drives a collector (SQLite) and a fresh Stripe sandbox on one manual clock. Instances A
and B of one customer report aligned hourly windows, in order or late. The forwarder steps now
and then. The collector crashes: its services are rebuilt on the same database, so what it held
in memory is lost. A call's answer can be lost after Stripe acted on it. The subscription renews,
with or without its webhook reaching the collector. The customer is relinked to a new Stripe
customer, through the API or by webhook, and the old subscription is cancelled. Its webhooks then
arrive after the new one's. An instance is retired.

At teardown, after settling, Stripe's own per-period aggregates must equal the reference model
(``tests/support/billing_model.py``), for every Stripe customer and every period. The model is
computed from the reports and the link, renewal and retirement events alone. To keep the
attribution deterministic, the machine settles before every relink, renewal and retirement.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from contextlib import AsyncExitStack, ExitStack
from datetime import datetime, timedelta
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from common.clock import ManualClock
from tests.support.billing_model import (
    Bucket,
    Event,
    Ingested,
    Linked,
    Period,
    Renewed,
    Retired,
    Window,
    bucket_for,
    current_bucket,
    expected,
)
from tests.support.forwarding import (
    METER_ERROR_EVENTS,
    SUBSCRIPTION_EVENTS,
    Harness,
    Subscription,
    WebhookFeed,
    dead_batches,
    harness,
    new_customer,
    window_report,
)
from tests.support.stripe_sandbox import START, running_sandbox

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
INSTANCES = ("A", "B")
PERIOD_REFRESH = 60  # COLLECTOR_STRIPE_PERIOD_REFRESH (seconds)
USAGE_PATHS = [
    "/v1/billing/meter_events",
    "/v2/billing/meter_event_stream",
    "/v1/subscription_items/",
]
# Shrinking a failing run takes minutes (each step drives the collector and the sandbox), so
# it is off unless BILLING_MACHINE_SHRINK=1; the failure report lists every step either way.
PHASES = [Phase.explicit, Phase.reuse, Phase.generate]
if os.environ.get("BILLING_MACHINE_SHRINK") == "1":
    PHASES.append(Phase.shrink)
MACHINE_SETTINGS = settings(
    max_examples=20,
    stateful_step_count=15,
    deadline=None,
    phases=PHASES,
    suppress_health_check=list(HealthCheck),
)

values = st.fixed_dictionaries(
    {
        "devices": st.integers(0, 60),
        "storage_gb": st.decimals(0, 200, places=2).map(float),
        "mqtt_messages": st.integers(0, 50_000),
    }
)


def floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


class BillingMachine(RuleBasedStateMachine):
    """One customer, two instances, one collector that crashes, and Stripe."""

    mode: ClassVar[str] = "meter_events"

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.resources = ExitStack()
        self.services = AsyncExitStack()
        self.stepping = False
        try:
            self.clock = ManualClock(START)
            self.sandbox = self.resources.enter_context(running_sandbox(self.clock))
            self.feed = WebhookFeed(self.sandbox)
            directory = self.resources.enter_context(tempfile.TemporaryDirectory())
            self.database_url = f"sqlite+aiosqlite:///{directory}/machine.db"
            self.h = self.open()
            self.customer = new_customer()
            self.subscription = self.run(self.h.create_subscription(self.customer))
            self.feed.drop()
            self.subscriptions: dict[str, Subscription] = {
                self.subscription.stripe_customer_id: self.subscription
            }
            self.events: list[Event] = [
                Linked(self.subscription.stripe_customer_id, Period(*self.subscription.period))
            ]
            self.reported: set[tuple[str, datetime]] = set()
            self.retired: set[str] = set()
        except BaseException:
            self.close()
            raise

    # plumbing -----------------------------------------------------------------------------

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def open(self) -> Harness:
        return self.run(  # type: ignore[no-any-return]
            self.services.enter_async_context(
                harness(
                    self.sandbox.url,
                    self.clock,
                    self.database_url,
                    self.mode,
                    feed=self.feed,
                    stripe_period_refresh=PERIOD_REFRESH,
                )
            )
        )

    def close(self) -> None:
        try:
            self.run(self.services.aclose())
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()
            self.resources.close()

    def settle(self) -> None:
        """Forward everything; meter error reports (if any) reach the collector."""
        self.run(self.h.settle())
        if self.run(self.h.deliver_webhooks(METER_ERROR_EVENTS)):
            self.run(self.h.settle())

    def usable(self, instance: str, end: datetime) -> bool:
        """A window the instance has not reported, which Stripe can still take in this mode."""
        if (instance, end) in self.reported or end <= START:
            return False
        if self.mode == "usage_records":
            # Usage records only reach an item's current period.
            return bucket_for(self.events, end) == current_bucket(self.events)
        return True

    # rules ----------------------------------------------------------------------------------

    @rule(instance=st.sampled_from(INSTANCES), late=st.integers(0, 4), metrics=values)
    def report(self, instance: str, late: int, metrics: dict[str, float]) -> None:
        """A window of ``instance``: the newest one, or one ``late`` hours older."""
        self.stepping = True
        if instance in self.retired:
            active = [i for i in INSTANCES if i not in self.retired]
            if not active:
                self.stepping = False
                return
            instance = active[0]
        end = floor_hour(self.clock.now()) - late * HOUR
        if late == 0:
            while not self.usable(instance, end):
                end += HOUR
        elif not self.usable(instance, end):
            self.stepping = False
            return
        self.run(self.h.report(window_report(self.customer, end - HOUR, end, metrics, instance)))
        self.reported.add((instance, end))
        self.events.append(Ingested(Window.of(instance, end, metrics)))
        self.stepping = False

    @rule()
    def step(self) -> None:
        self.stepping = True
        self.run(self.h.forwarder.step())
        self.stepping = False

    @rule()
    def answers_lost(self) -> None:
        """A forwarder round whose usage calls take effect at Stripe; their answers are lost."""
        self.stepping = True
        self.sandbox.control.faults(drop_after_rate=1.0, path_prefixes=USAGE_PATHS)
        try:
            self.run(self.h.forwarder.step())
        finally:
            self.sandbox.control.clear_faults()
        self.stepping = False

    @rule()
    def crash(self) -> None:
        """The collector dies and starts again on the same database: memory is lost."""
        self.stepping = True
        self.run(self.services.aclose())
        self.services = AsyncExitStack()
        self.h = self.open()
        self.stepping = False

    @rule(webhook=st.booleans())
    def renew(self, webhook: bool) -> None:
        """The subscription's period ends; its renewal webhook arrives, or is lost."""
        self.stepping = True
        self.settle()
        self.feed.drop()
        self.sandbox.control.advance_period(self.subscription.id)
        renewed = self.run(self.h.read_subscription(self.subscription))
        if webhook:
            self.run(self.h.deliver_webhooks(SUBSCRIPTION_EVENTS))
        else:
            self.feed.drop()
        self.subscription = renewed
        self.subscriptions[renewed.stripe_customer_id] = renewed
        self.events.append(Renewed(Period(*renewed.period)))
        self.stepping = False

    @rule(via=st.sampled_from(["api", "webhook"]))
    def relink(self, via: str) -> None:
        """A new Stripe customer and subscription; the old subscription is cancelled.

        The old subscription's ``customer.subscription.deleted`` arrives after the new
        subscription's ``created``.
        """
        self.stepping = True
        self.settle()
        self.feed.drop()
        now = self.clock.now()
        self.clock.set(now.replace(second=0, microsecond=0) + MINUTE)
        new = self.run(self.h.create_subscription(self.customer, remember=False))
        self.run(self.h.client.v1.subscriptions.cancel_async(self.subscription.id))
        if via == "api":
            self.run(
                self.h.services.linking.link(self.customer, new.stripe_customer_id, replace=True)
            )
        self.run(self.h.deliver_webhooks(SUBSCRIPTION_EVENTS))
        self.subscription = new
        self.subscriptions[new.stripe_customer_id] = new
        self.events.append(Linked(new.stripe_customer_id, Period(*new.period)))
        self.stepping = False

    @rule(instance=st.sampled_from(INSTANCES))
    def retire(self, instance: str) -> None:
        """The instance is gone for good: its device count stops being billed.

        Only an instance that has reported, and is not retired yet, can be retired.
        """
        self.stepping = True
        if instance not in self.retired and any(i == instance for i, _ in self.reported):
            self.settle()
            services: Any = self.h.services
            self.run(services.instances.retire(self.customer, instance))
            self.retired.add(instance)
            self.events.append(Retired(instance))
        self.stepping = False

    # the invariant --------------------------------------------------------------------------

    def teardown(self) -> None:
        try:
            if not self.stepping:
                self.check()
        finally:
            self.close()

    def check(self) -> None:
        self.settle()
        want = {label(b): v for b, v in expected(self.events).items()}
        have = {
            label(bucket): self.run(
                self.h.billed(
                    self.subscriptions[bucket.stripe_customer],
                    (bucket.period.start, bucket.period.end),
                )
            )
            for bucket in expected(self.events)
        }
        wrong = {k: {"stripe": have[k], "model": want[k]} for k in want if have[k] != want[k]}
        assert not wrong, f"Stripe differs from the reference model: {wrong}"
        dead = self.run(dead_batches(self.h))
        assert not dead, [(b.metric, b.last_error) for b in dead]


def label(bucket: Bucket) -> str:
    period = bucket.period
    return f"{bucket.stripe_customer} {period.start:%b %d %H:%M}..{period.end:%b %d %H:%M}"


@pytest.mark.parametrize("mode", ["meter_events", "meter_event_stream", "usage_records"])
def test_stripe_matches_the_reference_model_per_customer_and_period(mode: str) -> None:
    machine = type(f"BillingMachine_{mode}", (BillingMachine,), {"mode": mode})
    run_state_machine_as_test(machine, settings=MACHINE_SETTINGS)
