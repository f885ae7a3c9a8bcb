"""``GET /api/reconciliation``: the latest reconcile result per customer, as stored."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from pydantic import BaseModel, Field

from collector.api.auth import viewer
from collector.services.drift import Reconciled, ReconciliationList


class MetricDriftOut(BaseModel):
    metric: str
    collector: Decimal | None = Field(
        description="The collector's billable quantity for the period (null: nothing measured)."
    )
    stripe: Decimal | None = Field(description="Stripe's aggregate (null: nothing to read).")
    difference: Decimal = Field(description="stripe - collector, a missing side as 0.")
    state: str = Field(description="in_sync, settling or drifting.")


class ReconciliationOut(BaseModel):
    customer_id: str
    stripe_customer_id: str
    period_start: datetime
    period_end: datetime
    state: str = Field(
        description="drifting (a metric differs, nothing of it waits, and its newest delivery "
        "is older than COLLECTOR_RECONCILE_SETTLE), settling (apart only while usage is on its "
        "way or just delivered) or in_sync."
    )
    in_sync: bool = Field(description="Every metric equals Stripe's value exactly.")
    checked_at: datetime = Field(description="When Stripe was read.")
    pending_forwards: int = Field(description="Forwards Stripe had not acknowledged then.")
    metrics: list[MetricDriftOut] = Field(
        description="Each metric's values (results stored by older versions list only the "
        "metrics out of sync)."
    )

    @classmethod
    def of(cls, item: Reconciled) -> ReconciliationOut:
        record = item.record
        return cls(
            customer_id=record.customer_id,
            stripe_customer_id=record.stripe_customer_id,
            period_start=record.period_start,
            period_end=record.period_end,
            state=item.state,
            in_sync=record.in_sync,
            checked_at=record.checked_at,
            pending_forwards=item.pending_forwards,
            metrics=[MetricDriftOut(**vars(m)) for m in item.metrics],
        )


class ReconciliationController(Controller):
    path = "/api/reconciliation"
    tags = ["reconciliation"]

    @get(
        "/",
        summary="The latest reconcile result per customer",
        description="What the background reconciler (or `/reconcile`) stored last for each "
        "customer's current period, by customer id. A key limited to one customer passes "
        "`customer_id`.",
        guards=[viewer],
    )
    async def latest(
        self,
        reconciliation: NamedDependency[ReconciliationList],
        customer_id: Annotated[
            str | None, QueryParameter(min_length=1, max_length=128, required=False)
        ] = None,
        result_state: Annotated[
            str | None,
            QueryParameter(
                name="state",
                pattern=r"^(in_sync|drifting|settling)$",
                required=False,
                description="Only customers in this state.",
            ),
        ] = None,
    ) -> list[ReconciliationOut]:
        found = await reconciliation.latest(customer_id=customer_id, state=result_state)
        return [ReconciliationOut.of(item) for item in found]
