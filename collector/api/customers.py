"""The customers view and linking: who reports, who is billed, and what waits unbilled."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, Parameter, QueryParameter
from pydantic import BaseModel, Field

from collector.api.auth import current_principal, editor, viewer
from collector.api.schemas import ErrorBody
from collector.errors import NotFound
from collector.services.customers import CustomerFilter, CustomersService, CustomerView
from collector.services.linking import LinkingService, LinkResult
from common.billing_periods import PeriodBounds

MAX_SILENT_INTERVALS = 10_000


class InstanceOut(BaseModel):
    instance_id: str
    last_report_at: datetime = Field(description="When its newest report arrived.")
    last_window_end: datetime
    interval_seconds: float = Field(description="Length of its newest window (s).")
    silent: bool = Field(description="No window for `silent_intervals` of its own intervals.")


class CustomerOut(BaseModel):
    customer_id: str
    linked: bool
    stripe_customer_id: str | None
    subscription_id: str | None
    period: PeriodBounds | None = Field(description="The billing period now, when known.")
    instances: list[InstanceOut]
    pending: int = Field(description="Forwards Stripe has not acknowledged yet.")
    sent: int = Field(description="Forwards Stripe acknowledged (or made redundant).")
    dead: int = Field(description="Forwards in dead-lettered batches.")
    oldest_unbilled: datetime | None = Field(description="Window end of the oldest pending one.")
    oldest_unbilled_seconds: float | None
    unbillable: str | None = Field(
        description="Why stored usage cannot be billed now, and what fixes it; null if it can."
    )
    reconcile: str = Field(
        description="Latest current-period reconcile (background or `/reconcile`): in_sync, "
        "drifting, settling (forwards on their way, or within COLLECTOR_RECONCILE_SETTLE of a "
        "delivery) or unknown (never run)."
    )
    reconciled_at: datetime | None

    @classmethod
    def of(cls, view: CustomerView) -> CustomerOut:
        values = vars(view) | {
            "linked": view.linked,
            "instances": [InstanceOut(**vars(i)) for i in view.instances],
        }
        return cls(**values)


class LinkIn(BaseModel):
    stripe_customer_id: str = Field(pattern=r"^cus_[A-Za-z0-9]{1,60}$")
    replace: bool = Field(
        default=False, description="Relink a customer already linked to another Stripe customer."
    )
    share: bool = Field(
        default=False,
        description="Allow a Stripe customer that already backs another collector customer.",
    )


class LinkOut(BaseModel):
    customer_id: str
    stripe_customer_id: str
    replaced: str | None = Field(description="The Stripe customer it was linked to before.")
    stripe_checked: bool = Field(description="Whether Stripe confirmed the customer exists.")
    subscription: str = Field(
        description="read, none (no live subscription: calendar months), unreadable (Stripe "
        "failed; the forwarder reads it later) or not_configured (no API key)."
    )
    subscription_id: str | None
    period: PeriodBounds | None = Field(description="The billing period now, when known.")
    detail: str

    @classmethod
    def of(cls, result: LinkResult) -> LinkOut:
        return cls(**vars(result))


LINK_ERRORS = {
    409: ResponseSpec(
        ErrorBody,
        description="Already linked elsewhere (pass replace), or the Stripe customer backs "
        "another customer (pass share).",
    ),
    422: ResponseSpec(ErrorBody, description="Stripe has no such customer."),
    502: ResponseSpec(ErrorBody, description="Stripe could not be asked; nothing was linked."),
}


async def link_customer(
    request: Request[Any, Any, Any], customer_id: str, data: LinkIn, linking: LinkingService
) -> LinkOut:
    """Both link routes: the caller's principal is the audited actor."""
    result = await linking.link(
        customer_id,
        data.stripe_customer_id,
        replace=data.replace,
        share=data.share,
        actor=current_principal(request).describe(),
    )
    return LinkOut.of(result)


class CustomersController(Controller):
    path = "/api/customers"
    tags = ["customers"]

    @get("/", summary="Every customer: link, period, instances and unbilled usage", guards=[viewer])
    async def list_customers(
        self,
        customers: NamedDependency[CustomersService],
        customer_id: Annotated[
            str | None, QueryParameter(min_length=1, max_length=128, required=False)
        ] = None,
        unlinked: Annotated[
            bool, QueryParameter(description="Only customers with usage and no link.")
        ] = False,
        silent: Annotated[
            bool, QueryParameter(description="Only customers with a silent instance.")
        ] = False,
        out_of_sync: Annotated[
            bool, QueryParameter(description="Only customers whose last reconcile drifted.")
        ] = False,
        unbillable: Annotated[
            bool, QueryParameter(description="Only customers whose usage cannot be billed now.")
        ] = False,
        silent_intervals: Annotated[
            int,
            QueryParameter(
                ge=1,
                le=MAX_SILENT_INTERVALS,
                description="An instance is silent after this many of its own intervals.",
            ),
        ] = 3,
    ) -> list[CustomerOut]:
        which = CustomerFilter(
            unlinked=unlinked,
            silent=silent,
            out_of_sync=out_of_sync,
            unbillable=unbillable,
            silent_intervals=silent_intervals,
            customer_ids=(customer_id,) if customer_id else (),
        )
        return [CustomerOut.of(v) for v in await customers.list(which)]

    @get(
        "/{customer_id:str}",
        summary="One customer",
        guards=[viewer],
        responses={404: ResponseSpec(ErrorBody, description="Never reported nor linked.")},
    )
    async def one(
        self,
        customer_id: Annotated[str, Parameter(min_length=1, max_length=128)],
        customers: NamedDependency[CustomersService],
    ) -> CustomerOut:
        found = await customers.list(CustomerFilter(customer_ids=(customer_id,)))
        if not found:
            raise NotFound(
                f"customer {customer_id!r} never reported and is not linked", field="customer_id"
            )
        return CustomerOut.of(found[0])

    @post(
        "/{customer_id:str}/link",
        status_code=200,
        summary="Link a customer to a Stripe customer, checked first",
        guards=[editor],
        responses=LINK_ERRORS,
    )
    async def link(
        self,
        request: Request[Any, Any, Any],
        customer_id: Annotated[str, Parameter(min_length=1, max_length=128)],
        data: JSONBody[LinkIn],
        linking: NamedDependency[LinkingService],
    ) -> LinkOut:
        return await link_customer(request, customer_id, data, linking)
