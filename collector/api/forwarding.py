"""Forwarding endpoints for operators: status, batches, dead-letter retry, customer links."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, Parameter, PathParameter, QueryParameter
from pydantic import BaseModel, Field

from collector.adapters.db.tables import BatchRow
from collector.api.auth import current_principal, editor, viewer
from collector.api.customers import LINK_ERRORS, LinkIn, LinkOut, link_customer
from collector.api.schemas import ErrorBody, ReplicaLeadershipOut
from collector.services.forwarding_status import ForwardingStatus, ForwardingStatusService
from collector.services.instances import InstanceService
from collector.services.leader import Leadership, LeaderStatus
from collector.services.linking import LinkingService


class AgeingOut(BaseModel):
    customer_id: str
    metric: str
    forwards: int = Field(description="Waiting forwards (windows) this old.")
    oldest_window_end: datetime
    expires_at: datetime = Field(
        description="When the oldest reaches Stripe's 35-day limit; past it, Stripe refuses it "
        "and only a rebill into the current period can bill it."
    )


class WaitingOut(BaseModel):
    customer_id: str
    oldest_window_end: datetime
    reason: str = Field(description="Why its usage has no billing period yet, and what fixes it.")


class UnlinkedOut(BaseModel):
    customer_id: str
    forwards: int = Field(description="Its report metrics waiting for a link.")
    oldest_window_end: datetime
    waiting_seconds: float = Field(description="Seconds since the oldest one's window end.")


class StatusOut(BaseModel):
    mode: str
    enabled: bool
    forwards: dict[str, int] = Field(description="Report metrics by state.")
    batches: dict[str, int] = Field(description="Stripe calls (batches) by state.")
    oldest_waiting: datetime | None
    lag_seconds: float | None = Field(description="Age of the oldest unacknowledged forward (s).")
    calls_saved: int = Field(description="Stripe calls saved by coalescing and skipping.")
    ageing: list[AgeingOut] = Field(
        description="Waiting usage within COLLECTOR_STRIPE_AGE_WARNING_DAYS of Stripe's 35-day "
        "limit, or past it."
    )
    waiting: list[WaitingOut] = Field(
        description="Customers whose waiting usage has no billing period to go to yet."
    )
    customers_unbilled: dict[str, int] = Field(
        description="Customers with usage Stripe has not acknowledged, by reason: unlinked (no "
        "Stripe customer linked), waiting (linked, not sent or acknowledged yet), dead (an open "
        "dead letter). A customer can count under more than one reason."
    )
    unlinked_customers: list[UnlinkedOut] = Field(
        description="Customers whose usage waits because no Stripe customer is linked, oldest "
        "waiting first (at most 50; customers_unbilled.unlinked counts them all). Link one with "
        "POST /api/forwarding/customers/{id}/link."
    )
    leadership: ReplicaLeadershipOut | None = Field(
        description="The replica that answered: whether it leads and runs the once-only tasks "
        "(reconciler, ageing warnings, subscription reads), since when, and its identity. Ask "
        "each replica (or read usage_collector_leader) to find the leader."
    )

    @classmethod
    def of(cls, status: ForwardingStatus, leadership: LeaderStatus | None) -> StatusOut:
        values = vars(status) | {
            "ageing": [AgeingOut(**vars(a)) for a in status.ageing],
            "waiting": [WaitingOut(**vars(w)) for w in status.waiting],
            "unlinked_customers": [UnlinkedOut(**vars(u)) for u in status.unlinked_customers],
            "leadership": ReplicaLeadershipOut.of(leadership) if leadership else None,
        }
        return cls(**values)


class RebilledOut(BaseModel):
    batch_id: int = Field(description="The dead batch whose usage is billed again.")
    identifier: str = Field(description="Its identifier, never sent again.")
    customer_id: str
    metric: str
    quantity: int
    members: int


class RetirementOut(BaseModel):
    customer_id: str
    instance_id: str
    metrics: list[str] = Field(description="The device counts that stop being billed.")


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    customer_id: str
    detail: dict[str, Any]


class BatchOut(BaseModel):
    id: int
    customer_id: str
    metric: str
    semantics: str
    mode: str
    identifier: str
    quantity: int
    event_timestamp: datetime
    period_start: datetime
    period_end: datetime
    members: int
    state: str
    dead_reason: str | None = Field(
        description="Why a batch is dead: rejected (Stripe refused it), too_old (older than "
        "Stripe's 35 days; rebill it), meter_error (Stripe failed it repeatedly)."
    )
    stripe_customer_id: str | None
    attempts: int
    next_attempt_at: datetime
    last_status: int | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None

    @classmethod
    def of(cls, row: BatchRow) -> BatchOut:
        return cls(**{name: getattr(row, name) for name in cls.model_fields})


class ForwardingController(Controller):
    path = "/api/forwarding"
    tags = ["forwarding"]

    @get("/status", summary="Forwarding state: counts, lag and calls saved", guards=[viewer])
    async def status(
        self,
        forwarding: NamedDependency[ForwardingStatusService],
        leadership: NamedDependency[Leadership | None] = None,
    ) -> StatusOut:
        leads = leadership.status() if leadership is not None else None
        return StatusOut.of(await forwarding.status(), leads)

    @get(
        "/batches",
        summary="Batches, newest first (state=dead lists the dead letters)",
        guards=[viewer],
    )
    async def batches(
        self,
        forwarding: NamedDependency[ForwardingStatusService],
        batch_state: Annotated[
            str | None,
            QueryParameter(
                name="state", pattern="^(pending|sent|dead|rejected|rebilled|dissolved)$"
            ),
        ] = None,
        customer_id: Annotated[str | None, Parameter(max_length=128)] = None,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
    ) -> list[BatchOut]:
        return [
            BatchOut.of(row) for row in await forwarding.batches(batch_state, customer_id, limit)
        ]

    @post(
        "/batches/{batch_id:int}/retry",
        status_code=200,
        summary="Retry a dead-lettered batch",
        guards=[editor],
        responses={409: ResponseSpec(ErrorBody, description="The batch is not dead-lettered.")},
    )
    async def retry(
        self,
        batch_id: Annotated[int, PathParameter(ge=1, le=2**63 - 1)],
        forwarding: NamedDependency[ForwardingStatusService],
    ) -> BatchOut:
        return BatchOut.of(await forwarding.retry(batch_id))

    @post(
        "/customers/{customer_id:str}/link",
        status_code=200,
        summary="Link a customer to Stripe (same as POST /api/customers/{customer_id}/link)",
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

    @post(
        "/batches/{batch_id:int}/rebill",
        status_code=200,
        summary="Bill a batch Stripe refused as older than 35 days into the current period",
        guards=[editor],
        responses={
            404: ResponseSpec(ErrorBody, description="No such batch."),
            409: ResponseSpec(ErrorBody, description="Not an aged increment batch."),
        },
    )
    async def rebill(
        self,
        request: Request[Any, Any, Any],
        batch_id: Annotated[int, PathParameter(ge=1, le=2**63 - 1)],
        forwarding: NamedDependency[ForwardingStatusService],
    ) -> list[RebilledOut]:
        done = await forwarding.rebill(
            actor=current_principal(request).describe(), batch_id=batch_id
        )
        return [RebilledOut(**vars(r)) for r in done]

    @post(
        "/customers/{customer_id:str}/rebill-aged",
        status_code=200,
        summary="Bill every batch of a customer Stripe refused as too old into the current period",
        guards=[editor],
    )
    async def rebill_customer(
        self,
        request: Request[Any, Any, Any],
        customer_id: Annotated[str, Parameter(min_length=1, max_length=128)],
        forwarding: NamedDependency[ForwardingStatusService],
    ) -> list[RebilledOut]:
        done = await forwarding.rebill(
            actor=current_principal(request).describe(), customer_id=customer_id
        )
        return [RebilledOut(**vars(r)) for r in done]

    @post(
        "/customers/{customer_id:str}/instances/{instance_id:str}/retire",
        status_code=200,
        summary="Retire an instance: its last device count stops being billed",
        guards=[editor],
        responses={404: ResponseSpec(ErrorBody, description="No device count to retire.")},
    )
    async def retire(
        self,
        request: Request[Any, Any, Any],
        customer_id: Annotated[str, Parameter(min_length=1, max_length=128)],
        instance_id: Annotated[str, Parameter(min_length=1, max_length=128)],
        instances: NamedDependency[InstanceService],
    ) -> RetirementOut:
        retired = await instances.retire(
            customer_id, instance_id, current_principal(request).describe()
        )
        return RetirementOut(**vars(retired))

    @get(
        "/audit",
        summary="Relinks, retirements, rebills and meter errors, newest first",
        guards=[viewer],
    )
    async def audit(
        self,
        forwarding: NamedDependency[ForwardingStatusService],
        customer_id: Annotated[str | None, Parameter(max_length=128)] = None,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
    ) -> list[AuditOut]:
        rows = await forwarding.audit(customer_id, limit)
        return [AuditOut(**dict(r._mapping)) for r in rows]
