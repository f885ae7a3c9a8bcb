"""Stripe-facing endpoints: the signed webhook, reconciliation and the invoice preview."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter
from pydantic import BaseModel, Field

from collector.api.auth import PUBLIC, viewer
from collector.api.schemas import COMPLETE, INCOMPLETE_METRIC, INCOMPLETE_REPORTS, ErrorBody
from collector.errors import BodyTooLarge
from collector.services.reconcile import ReconcileService
from collector.services.webhooks import WebhookService

CustomerId = Annotated[str, Parameter(min_length=1, max_length=128, description="Customer id.")]
MAX_WEBHOOK_BYTES = 512 * 1024


class WebhookOut(BaseModel):
    received: bool
    event_id: str
    type: str
    duplicate: bool
    action: str


class MetricReconciliationOut(BaseModel):
    metric: str
    semantics: str
    collector_value: Decimal | None = Field(description="Folded from stored windows (exact).")
    collector_billable: int | None = Field(description="The whole number Stripe should hold.")
    delivered: int | None = Field(description="What Stripe acknowledged from the outbox.")
    stripe_value: Decimal | None = Field(description="Stripe's aggregate for the period.")
    in_sync: bool
    incomplete_windows: int = Field(description=INCOMPLETE_METRIC)
    state: str = Field(
        description="in_sync; settling (a forward of it waits, or its newest delivery is within "
        "COLLECTOR_RECONCILE_SETTLE); drifting (apart past that)."
    )


class ReconcileOut(BaseModel):
    customer_id: str
    stripe_customer_id: str
    period_start: datetime
    period_end: datetime
    in_sync: bool
    state: str = Field(description="drifting if a metric drifts, else settling if one settles.")
    pending_forwards: int = Field(
        description="This customer's forwards that Stripe has not acknowledged yet."
    )
    complete: bool = Field(description=COMPLETE)
    incomplete_windows: int = Field(
        description=f"{INCOMPLETE_REPORTS} A window counts in the period its end falls in, "
        "`(period_start, period_end]`."
    )
    metrics: list[MetricReconciliationOut]


class InvoiceLineOut(BaseModel):
    description: str | None
    amount: int
    quantity: int | None
    lookup_key: str | None


class InvoicePreviewOut(BaseModel):
    customer_id: str
    currency: str
    subtotal: int
    total: int
    amount_due: int
    period_start: datetime | None
    period_end: datetime | None
    lines: list[InvoiceLineOut]


def invoice_lines(invoice: dict[str, Any]) -> list[InvoiceLineOut]:
    """The lines of a Stripe invoice (or preview), each named by its price's lookup key."""
    return [_line(line) for line in (invoice.get("lines") or {}).get("data", [])]


def _line(line: dict[str, Any]) -> InvoiceLineOut:
    pricing = line.get("pricing") or {}
    price = line.get("price") or (pricing.get("price_details") or {}).get("price") or {}
    lookup_key = price.get("lookup_key") if isinstance(price, dict) else None
    return InvoiceLineOut(
        description=line.get("description"),
        amount=int(line.get("amount") or 0),
        quantity=line.get("quantity"),
        lookup_key=lookup_key,
    )


def _time(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if value else None


class StripeWebhookController(Controller):
    path = "/api/stripe"
    tags = ["stripe"]

    @post(
        "/webhook",
        status_code=200,
        summary="Stripe webhook (signed with the webhook secret)",
        opt={PUBLIC: True},  # authenticated by its Stripe-Signature, not a bearer credential
    )
    async def webhook(
        self, request: Request[Any, Any, Any], webhooks: NamedDependency[WebhookService]
    ) -> WebhookOut:
        """Verifies `Stripe-Signature`; a bad or old signature is 400 and stores nothing."""
        body = await request.body()
        if len(body) > MAX_WEBHOOK_BYTES:
            raise BodyTooLarge(f"webhook body is larger than {MAX_WEBHOOK_BYTES} bytes")
        outcome = await webhooks.handle(body, request.headers.get("stripe-signature"))
        return WebhookOut(
            received=True,
            event_id=outcome.event_id,
            type=outcome.event_type,
            duplicate=outcome.duplicate,
            action=outcome.action,
        )


BILLING_ERRORS = {
    409: ResponseSpec(ErrorBody, description="The customer is not linked to Stripe."),
    502: ResponseSpec(ErrorBody, description="Stripe failed or refused the call."),
    503: ResponseSpec(ErrorBody, description="Stripe is not configured."),
}


class BillingController(Controller):
    path = "/api/usage"
    tags = ["usage"]
    guards = [viewer]

    @get(
        "/{customer_id:str}/reconcile",
        summary="This period's totals beside Stripe's",
        responses=BILLING_ERRORS,
    )
    async def reconcile(
        self, customer_id: CustomerId, reconciler: NamedDependency[ReconcileService]
    ) -> ReconcileOut:
        result = await reconciler.reconcile(customer_id)
        return ReconcileOut(
            customer_id=result.customer_id,
            stripe_customer_id=result.stripe_customer_id,
            period_start=result.period.start,
            period_end=result.period.end,
            in_sync=result.in_sync,
            state=result.state,
            pending_forwards=result.pending_forwards,
            complete=result.complete,
            incomplete_windows=result.incomplete_windows,
            metrics=[MetricReconciliationOut(**vars(m)) for m in result.metrics],
        )

    @get(
        "/{customer_id:str}/invoice-preview",
        summary="Stripe's preview of the next invoice",
        responses=BILLING_ERRORS,
    )
    async def invoice_preview(
        self, customer_id: CustomerId, reconciler: NamedDependency[ReconcileService]
    ) -> InvoicePreviewOut:
        invoice = await reconciler.invoice_preview(customer_id)
        return InvoicePreviewOut(
            customer_id=customer_id,
            currency=str(invoice.get("currency") or "usd"),
            subtotal=int(invoice.get("subtotal") or 0),
            total=int(invoice.get("total") or 0),
            amount_due=int(invoice.get("amount_due") or 0),
            period_start=_time(invoice.get("period_start")),
            period_end=_time(invoice.get("period_end")),
            lines=invoice_lines(invoice),
        )
