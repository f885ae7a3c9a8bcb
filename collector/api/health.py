"""Liveness, readiness and the Prometheus metrics endpoint."""

from __future__ import annotations

from litestar import Response, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from collector.adapters.db.reports import ReportStore
from collector.api.auth import PUBLIC
from collector.api.schemas import HealthResponse
from collector.errors import CollectorError
from collector.telemetry import CollectorMetrics


@get("/health/live", tags=["health"], summary="The process is up", opt={PUBLIC: True})
async def live() -> HealthResponse:
    return HealthResponse(status="ok")


@get(
    "/health/ready",
    tags=["health"],
    summary="The database answers",
    opt={PUBLIC: True},
    responses={503: ResponseSpec(HealthResponse, description="Not ready.")},
)
async def ready(store: NamedDependency[ReportStore]) -> Response[HealthResponse]:
    try:
        await store.ping()
    except CollectorError as exc:
        body = HealthResponse(status="unavailable", checks={"database": exc.detail})
        return Response(body, status_code=503)
    return Response(HealthResponse(status="ok", checks={"database": "ok"}), status_code=200)


# Public like the health checks: it must hold counts and labels only, never a secret or an id
# an attacker could use (no tokens, keys, customer ids or URLs).
@get(
    "/metrics",
    tags=["health"],
    summary="Prometheus metrics",
    media_type=CONTENT_TYPE_LATEST,
    opt={PUBLIC: True},
)
async def metrics(telemetry: NamedDependency[CollectorMetrics]) -> Response[bytes]:
    return Response(generate_latest(telemetry.registry), media_type=CONTENT_TYPE_LATEST)
