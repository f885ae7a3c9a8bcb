"""Liveness, readiness and the Prometheus metrics endpoint.

Ready means the collector can do its work: the database answers, and its schema is migrated
(see :mod:`collector.adapters.db.migrate`). The schema check is remembered for a few seconds,
so frequent probes cost one ``SELECT 1`` each; a `usage-collector db upgrade` run by another
process turns readiness to 200 within that time, without a restart. Its answer also says
whether this replica leads (``collector.services.leader``); leading never affects readiness.
"""

from __future__ import annotations

from litestar import Response, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.ext.asyncio import AsyncEngine

from collector.adapters.db.migrate import SchemaState, schema_state
from collector.adapters.db.reports import ReportStore
from collector.api.auth import PUBLIC
from collector.api.schemas import HealthResponse, LeadershipOut
from collector.errors import CollectorError
from collector.services.leader import Leadership
from collector.telemetry import CollectorMetrics
from common.clock import Clock

SCHEMA_CHECK_TTL_SECONDS = 5.0


class SchemaReadiness:
    """The schema's state, read at most once per ``ttl`` seconds."""

    def __init__(
        self, engine: AsyncEngine, clock: Clock, *, ttl: float = SCHEMA_CHECK_TTL_SECONDS
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._ttl = ttl
        self._state: SchemaState | None = None
        self._read_at = 0.0

    async def state(self) -> SchemaState:
        """The remembered state while fresh; raises ``CollectorError`` when unreachable."""
        now = self._clock.monotonic()
        if self._state is None or now - self._read_at >= self._ttl:
            self._state = await schema_state(self._engine)
            self._read_at = now
        return self._state


@get("/health/live", tags=["health"], summary="The process is up", opt={PUBLIC: True})
async def live() -> HealthResponse:
    return HealthResponse(status="ok")


@get(
    "/health/ready",
    tags=["health"],
    summary="The database answers and its schema is migrated",
    opt={PUBLIC: True},
    responses={503: ResponseSpec(HealthResponse, description="Not ready.")},
)
async def ready(
    store: NamedDependency[ReportStore],
    schema_readiness: NamedDependency[SchemaReadiness],
    leadership: NamedDependency[Leadership | None] = None,
) -> Response[HealthResponse]:
    leading = LeadershipOut.of(leadership.status()) if leadership is not None else None
    try:
        await store.ping()
    except CollectorError as exc:
        body = HealthResponse(
            status="unavailable", checks={"database": exc.detail}, leadership=leading
        )
        return Response(body, status_code=503)
    try:
        state = await schema_readiness.state()
    except CollectorError:
        # The adapter's message names the database URL: not for a public endpoint.
        body = HealthResponse(
            status="unavailable",
            checks={"database": "the database is unavailable"},
            leadership=leading,
        )
        return Response(body, status_code=503)
    checks = {"database": "ok", "schema": state.describe()}
    status = "ok" if state.migrated else "unavailable"
    body = HealthResponse(status=status, checks=checks, leadership=leading)
    return Response(body, status_code=200 if state.migrated else 503)


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
