"""The Litestar application, assembled from settings and injected I/O."""

from __future__ import annotations

from dataclasses import dataclass

from litestar import Litestar
from litestar.di import Provide
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from collector.adapters.db.engine import create_engine
from collector.adapters.db.reports import ReportStore
from collector.api.errors import make_exception_handler
from collector.api.health import live, metrics, ready
from collector.api.openapi import add_body_schemas, openapi_config
from collector.api.usage import UsageController
from collector.services.ingest import IngestService
from collector.services.usage import UsageService
from collector.settings import CollectorSettings
from collector.telemetry import CollectorMetrics
from common.clock import Clock, SystemClock


@dataclass(frozen=True)
class Services:
    """Everything the handlers need, built once per application."""

    settings: CollectorSettings
    clock: Clock
    engine: AsyncEngine
    store: ReportStore
    telemetry: CollectorMetrics
    ingest: IngestService
    usage: UsageService


def build_services(
    settings: CollectorSettings,
    *,
    clock: Clock | None = None,
    engine: AsyncEngine | None = None,
    registry: CollectorRegistry | None = None,
) -> Services:
    clock = clock or SystemClock()
    engine = engine or create_engine(
        settings.async_database_url(), pool_size=settings.database_pool_size
    )
    store = ReportStore(engine)
    telemetry = CollectorMetrics(registry or CollectorRegistry())
    catalogue = settings.catalogue()
    return Services(
        settings=settings,
        clock=clock,
        engine=engine,
        store=store,
        telemetry=telemetry,
        ingest=IngestService(
            store,
            catalogue,
            clock,
            telemetry,
            legacy_window=settings.legacy_window,
            max_body_bytes=settings.max_body_bytes,
        ),
        usage=UsageService(store, catalogue, clock, max_limit=settings.history_max_limit),
    )


def create_app(settings: CollectorSettings, services: Services | None = None) -> Litestar:
    """The collector app; the database schema must already be migrated."""
    built = services or build_services(settings)

    async def dispose() -> None:
        await built.store.close()
        await built.engine.dispose()

    def constant(value: object) -> Provide:
        return Provide(lambda: value, sync_to_thread=False, use_cache=True)

    app = Litestar(
        route_handlers=[UsageController, live, ready, metrics],
        dependencies={
            "ingest": constant(built.ingest),
            "usage": constant(built.usage),
            "store": constant(built.store),
            "telemetry": constant(built.telemetry),
        },
        exception_handlers={Exception: make_exception_handler(built.telemetry)},
        openapi_config=openapi_config(),
        request_max_body_size=settings.max_body_bytes,
        on_shutdown=[dispose],
        logging_config=None,
        debug=False,
    )
    add_body_schemas(app.openapi_schema.components)
    return app
