"""Usage endpoints: report ingest, history, the latest report and per-period totals."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from collector.api.auth import authorize_customer, ingest_only, viewer
from collector.api.ingest_answer import answer_body
from collector.api.openapi import ReportOperation
from collector.api.schemas import (
    ErrorBody,
    HistoryResponse,
    IngestResponse,
    MetricTotalOut,
    ReportOut,
    TotalsResponse,
)
from collector.errors import BodyTooLarge
from collector.services.ingest import IngestService
from collector.services.usage import UsageService

CustomerId = Annotated[str, Parameter(min_length=1, max_length=128, description="Customer id.")]
_ERRORS = {
    code: ResponseSpec(ErrorBody, description=text)
    for code, text in {
        400: "Malformed request (not JSON).",
        413: "Body larger than the configured limit.",
        415: "Content type is not application/json.",
        422: "The report failed validation.",
        409: "The same report_id was already stored with different content.",
        503: "The database is unavailable; retry later.",
    }.items()
}


class UsageController(Controller):
    path = "/api/usage"
    tags = ["usage"]

    @post(
        "/report",
        operation_class=ReportOperation,
        summary="Report usage for one window",
        status_code=201,
        guards=[ingest_only],
        responses={
            200: ResponseSpec(IngestResponse, description="Already stored; not counted again."),
            **_ERRORS,
        },
    )
    async def report(
        self,
        request: Request[Any, Any, Any],
        ingest: NamedDependency[IngestService],
    ) -> Response[IngestResponse]:
        """Store a report once. Returns 201 when new, 200 with the stored report for a repeat."""
        max_body_bytes = ingest.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_body_bytes:
            raise BodyTooLarge(f"body is larger than {max_body_bytes} bytes")
        body = await request.body()
        if len(body) > max_body_bytes:
            raise BodyTooLarge(f"body is larger than {max_body_bytes} bytes")
        try:
            report, legacy = ingest.decode(
                body, request.headers.get("content-type"), request.headers.get("idempotency-key")
            )
        except Exception:
            ingest.rejected()
            raise
        authorize_customer(request, report.customer_id)
        result = await ingest.store(report, legacy=legacy)
        # The body is an IngestResponse, already encoded (see ingest_answer).
        answer: Response[Any] = Response(
            answer_body(result),
            status_code=201 if result.created else 200,
            media_type=MediaType.JSON,
        )
        return answer

    @get("/{customer_id:str}", summary="Usage history, newest window first", guards=[viewer])
    async def history(
        self,
        customer_id: CustomerId,
        usage: NamedDependency[UsageService],
        limit: Annotated[int, Parameter(ge=1, le=1000, description="Page size (reports).")] = 100,
        cursor: Annotated[
            str | None, Parameter(max_length=200, description="From next_cursor.")
        ] = None,
        since: Annotated[
            datetime | None, Parameter(description="Only windows ending after this.")
        ] = None,
        until: Annotated[
            datetime | None, Parameter(description="Only windows ending at or before this.")
        ] = None,
    ) -> HistoryResponse:
        page = await usage.history(
            customer_id, limit=limit, cursor=cursor, since=since, until=until
        )
        return HistoryResponse(
            customer_id=customer_id,
            reports=[ReportOut.of(row) for row in page.reports],
            next_cursor=page.next_cursor,
        )

    @get(
        "/{customer_id:str}/latest",
        summary="The newest report",
        responses={404: _ERRORS[422]},
        guards=[viewer],
    )
    async def latest(
        self, customer_id: CustomerId, usage: NamedDependency[UsageService]
    ) -> ReportOut:
        return ReportOut.of(await usage.latest(customer_id))

    @get(
        "/{customer_id:str}/totals",
        summary="Billed quantity per metric over a period",
        guards=[viewer],
    )
    async def totals(
        self,
        customer_id: CustomerId,
        usage: NamedDependency[UsageService],
        since: Annotated[
            datetime | None,
            Parameter(description="Period start; default: the current period's start."),
        ] = None,
        until: Annotated[
            datetime | None,
            Parameter(description="Period end; default: the current period's end."),
        ] = None,
    ) -> TotalsResponse:
        """Folds the stored windows by each metric's semantics: sum, newest or peak.

        Windows ending in `(since, until]` count. The period defaults to the customer's current
        billing period, the one `/reconcile` uses, or the current UTC month when none is known;
        `period_source` says which. `complete` is false when any window was not measured in
        full; `incomplete_windows` says how many, in all and per metric."""
        period = await usage.totals(customer_id, since, until)
        return TotalsResponse(
            customer_id=customer_id,
            since=period.since,
            until=period.until,
            period_source=period.period_source,
            complete=period.complete,
            incomplete_windows=period.incomplete.reports,
            totals=[MetricTotalOut(**vars(total)) for total in period.totals],
        )
