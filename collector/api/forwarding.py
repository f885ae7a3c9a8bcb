"""Forwarding endpoints for operators: status, batches, dead-letter retry, customer links."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, Parameter, PathParameter, QueryParameter
from pydantic import BaseModel, Field

from collector.adapters.db.tables import BatchRow
from collector.api.auth import editor, viewer
from collector.api.schemas import ErrorBody
from collector.services.forwarding_status import ForwardingStatusService


class StatusOut(BaseModel):
    mode: str
    enabled: bool
    forwards: dict[str, int] = Field(description="Report metrics by state.")
    batches: dict[str, int] = Field(description="Stripe calls (batches) by state.")
    oldest_waiting: datetime | None
    lag_seconds: float | None = Field(description="Age of the oldest unacknowledged forward (s).")
    calls_saved: int = Field(description="Stripe calls saved by coalescing and skipping.")


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
    attempts: int
    next_attempt_at: datetime
    last_status: int | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None

    @classmethod
    def of(cls, row: BatchRow) -> BatchOut:
        return cls(**{name: getattr(row, name) for name in cls.model_fields})


class LinkIn(BaseModel):
    stripe_customer_id: str = Field(pattern=r"^cus_[A-Za-z0-9]{1,60}$")


class ForwardingController(Controller):
    path = "/api/forwarding"
    tags = ["forwarding"]

    @get("/status", summary="Forwarding state: counts, lag and calls saved", guards=[viewer])
    async def status(self, forwarding: NamedDependency[ForwardingStatusService]) -> StatusOut:
        return StatusOut(**vars(await forwarding.status()))

    @get(
        "/batches",
        summary="Batches, newest first (state=dead lists the dead letters)",
        guards=[viewer],
    )
    async def batches(
        self,
        forwarding: NamedDependency[ForwardingStatusService],
        batch_state: Annotated[
            str | None, QueryParameter(name="state", pattern="^(pending|sent|dead)$")
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
        summary="Link a customer to Stripe",
        guards=[editor],
    )
    async def link(
        self,
        customer_id: Annotated[str, Parameter(min_length=1, max_length=128)],
        data: JSONBody[LinkIn],
        forwarding: NamedDependency[ForwardingStatusService],
    ) -> dict[str, str]:
        await forwarding.link(customer_id, data.stripe_customer_id)
        return {"customer_id": customer_id, "stripe_customer_id": data.stripe_customer_id}
