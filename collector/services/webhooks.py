"""Stripe webhooks: verified, processed once per event id, keeping links and periods current."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stripe
import structlog

from collector.adapters.db.corrections import CorrectionStore
from collector.adapters.db.links import LinkStore
from collector.adapters.stripe.client import translate
from collector.errors import BadRequest, StripeNotConfigured
from collector.services.subscriptions import SubscriptionItems
from collector.telemetry import CollectorMetrics
from common.clock import Clock

log = structlog.get_logger("collector.webhooks")
TOLERANCE_SECONDS = 300
SUBSCRIPTION_EVENTS = {
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
}
INVOICE_EVENTS = {"invoice.created", "invoice.finalized", "invoice.paid", "invoice.payment_failed"}
METER_ERROR_EVENT = "v1.billing.meter.error_report_triggered"


class InvalidSignature(BadRequest):
    code = "invalid_signature"


@dataclass(frozen=True)
class WebhookOutcome:
    event_id: str
    event_type: str
    duplicate: bool
    action: str


class WebhookService:
    def __init__(
        self,
        secret: str | None,
        links: LinkStore,
        corrections: CorrectionStore,
        clock: Clock,
        metrics: CollectorMetrics,
        *,
        client: stripe.StripeClient | None = None,
    ) -> None:
        self._secret = secret
        self._links = links
        self._corrections = corrections
        self._clock = clock
        self._metrics = metrics
        self._client = client

    def _verify(self, payload: bytes, signature: str | None) -> dict[str, Any]:
        if not self._secret:
            raise StripeNotConfigured("COLLECTOR_STRIPE_WEBHOOK_SECRET is not set")
        if not signature:
            raise InvalidSignature("missing Stripe-Signature header", field="stripe-signature")
        try:
            stripe.WebhookSignature.verify_header(
                payload.decode("utf-8"), signature, self._secret, TOLERANCE_SECONDS
            )
            event = json.loads(payload)
        except (stripe.SignatureVerificationError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidSignature(
                "signature does not match the body, or is older than 300 s",
                field="stripe-signature",
            ) from exc
        if not isinstance(event, dict) or "id" not in event or "type" not in event:
            raise BadRequest("not a Stripe event", field="body")
        return event

    async def handle(self, payload: bytes, signature: str | None) -> WebhookOutcome:
        """Verify and process one delivery; a replayed event id is acknowledged, not redone.

        The event id is claimed before processing, so concurrent deliveries of one event are
        processed once; a failure releases the claim for Stripe's retry.
        """
        event = self._verify(payload, signature)
        event_id, event_type = str(event["id"]), str(event["type"])
        if not await self._links.first_time(event_id, event_type, self._clock.now()):
            self._metrics.webhooks.labels(event_type, "duplicate").inc()
            return WebhookOutcome(event_id, event_type, True, "already processed")
        try:
            action = await self._process(event_type, event, payload)
        except BaseException:
            await self._links.forget_event(event_id)
            raise
        self._metrics.webhooks.labels(event_type, "processed").inc()
        log.info("stripe webhook processed", event_id=event_id, type=event_type, action=action)
        return WebhookOutcome(event_id, event_type, False, action)

    async def _process(self, event_type: str, event: dict[str, Any], payload: bytes) -> str:
        if event_type in SUBSCRIPTION_EVENTS:
            created = event.get("created")
            event_at = datetime.fromtimestamp(int(created), UTC) if created else None
            return await self._subscription(event["data"]["object"], event_at)
        if event_type in INVOICE_EVENTS:
            invoice = event["data"]["object"]
            return f"invoice {invoice.get('id')} is {invoice.get('status')}"
        if event_type == METER_ERROR_EVENT:
            return await self._meter_errors(event, payload)
        return "ignored"

    async def _subscription(self, subscription: dict[str, Any], event_at: datetime | None) -> str:
        stripe_customer = subscription.get("customer")
        if isinstance(stripe_customer, dict):
            stripe_customer = stripe_customer.get("id")
        customer_id = (subscription.get("metadata") or {}).get("customer_id")
        if not customer_id and stripe_customer:
            link = await self._links.by_stripe_customer(str(stripe_customer))
            customer_id = link.customer_id if link else None
        if not customer_id or not stripe_customer:
            return "no metadata.customer_id and no linked Stripe customer: ignored"
        current = await SubscriptionItems.remember_with(
            self._links,
            self._clock,
            customer_id,
            str(stripe_customer),
            subscription,
            event_at=event_at,
        )
        if not current:
            return (
                f"recorded the periods of subscription {subscription.get('id')}; {customer_id} "
                "stays on its current, newer subscription"
            )
        return f"linked {customer_id} to {stripe_customer}, subscription {subscription.get('id')}"

    async def _meter_errors(self, event: dict[str, Any], payload: bytes) -> str:
        data = event.get("data")
        if data is None and self._client is not None:
            try:
                notification = self._client.parse_event_notification_without_verification(payload)
                full = await notification.fetch_event_async()
                data = full.to_dict().get("data")
            except stripe.StripeError as exc:
                raise translate(exc) from exc
        errors = []
        for error_type in ((data or {}).get("reason") or {}).get("error_types", []):
            for sample in error_type.get("sample_errors", []):
                identifier = ((sample.get("request") or {}).get("identifier")) or ""
                message = sample.get("error_message") or error_type.get("code") or "meter error"
                if identifier:
                    errors.append((identifier, f"Stripe meter error: {message}"))
        outcomes: dict[str, int] = {}
        for identifier, message in errors:
            outcome = await self._corrections.meter_error(identifier, message, self._clock.now())
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if outcome in ("requeued", "dead"):
                log.warning(
                    "stripe reported a failed meter event",
                    identifier=identifier,
                    outcome=outcome,
                    error=message,
                )
        summary = ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items())) or "none"
        return f"{len(errors)} reported events: {summary}"
