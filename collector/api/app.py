"""The Litestar application, assembled from settings and injected I/O."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from litestar import Litestar
from litestar.di import Provide
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from collector.adapters.db.engine import create_engine
from collector.adapters.db.links import LinkStore
from collector.adapters.db.outbox import OutboxStore, enqueue
from collector.adapters.db.reports import ReportStore
from collector.adapters.db.tables import StoredReport
from collector.api.errors import make_exception_handler
from collector.api.forwarding import ForwardingController
from collector.api.health import live, metrics, ready
from collector.api.openapi import add_body_schemas, openapi_config
from collector.api.usage import UsageController
from collector.services.forwarder import Forwarder, ForwarderConfig
from collector.services.forwarding_setup import make_sender, stripe_client
from collector.services.forwarding_status import ForwardingStatusService
from collector.services.ingest import IngestService
from collector.services.usage import UsageService
from collector.settings import CollectorSettings, StripeMode
from collector.telemetry import CollectorMetrics
from common.catalogue import MetricCatalogue
from common.clock import Clock, SystemClock

log = structlog.get_logger("collector")


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
    outbox: OutboxStore
    links: LinkStore
    forwarder: Forwarder | None
    forwarding: ForwardingStatusService


def build_services(
    settings: CollectorSettings,
    *,
    clock: Clock | None = None,
    engine: AsyncEngine | None = None,
    registry: CollectorRegistry | None = None,
    forwarder: Forwarder | None = None,
) -> Services:
    clock = clock or SystemClock()
    engine = engine or create_engine(
        settings.async_database_url(), pool_size=settings.database_pool_size
    )
    store = ReportStore(engine)
    telemetry = CollectorMetrics(registry or CollectorRegistry())
    catalogue = settings.catalogue()
    outbox = OutboxStore(engine)
    links = LinkStore(engine)
    active_clock = clock

    async def write_forwards(conn: AsyncConnection, rows: Sequence[StoredReport]) -> None:
        await enqueue(conn, rows, active_clock.now())

    store.writer.set_after_insert(write_forwards)
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
        outbox=outbox,
        links=links,
        forwarding=ForwardingStatusService(settings, outbox, links, clock),
        forwarder=forwarder
        or _make_forwarder(settings, outbox, links, catalogue, clock, telemetry),
    )


def _make_forwarder(
    settings: CollectorSettings,
    outbox: OutboxStore,
    links: LinkStore,
    catalogue: MetricCatalogue,
    clock: Clock,
    telemetry: CollectorMetrics,
) -> Forwarder | None:
    """The outbox worker, or ``None`` while forwarding is off or no Stripe key is configured."""
    if settings.stripe_mode is StripeMode.OFF or settings.stripe_api_key is None:
        return None
    client = stripe_client(settings)
    config = ForwarderConfig(
        mode=settings.stripe_mode.value,
        max_rps=settings.stripe_max_rps,
        concurrency=settings.stripe_concurrency,
        coalesce=settings.stripe_coalesce,
        backoff_cap=settings.stripe_backoff_cap,
        idle_sleep=settings.forwarder_idle_sleep,
    )
    sender = make_sender(settings, client, links, clock)
    return Forwarder(outbox, links, sender, catalogue, clock, telemetry, config)


def create_app(settings: CollectorSettings, services: Services | None = None) -> Litestar:
    """The collector app; the database schema must already be migrated."""
    built = services or build_services(settings)

    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def start_forwarder() -> None:
        if built.forwarder is not None and settings.forwarder_enabled:
            tasks.append(asyncio.create_task(built.forwarder.run(stop)))
        elif settings.stripe_mode is not StripeMode.OFF and settings.stripe_api_key is None:
            log.warning("no COLLECTOR_STRIPE_API_KEY: reports are stored and forwards wait")

    async def dispose() -> None:
        stop.set()
        for task in tasks:
            await task
        await built.store.close()
        await built.engine.dispose()

    def constant(value: object) -> Provide:
        return Provide(lambda: value, sync_to_thread=False, use_cache=True)

    app = Litestar(
        route_handlers=[UsageController, ForwardingController, live, ready, metrics],
        dependencies={
            "ingest": constant(built.ingest),
            "usage": constant(built.usage),
            "store": constant(built.store),
            "telemetry": constant(built.telemetry),
            "forwarding": constant(built.forwarding),
        },
        exception_handlers={Exception: make_exception_handler(built.telemetry)},
        openapi_config=openapi_config(),
        request_max_body_size=settings.max_body_bytes,
        on_startup=[start_forwarder],
        on_shutdown=[dispose],
        logging_config=None,
        debug=False,
    )
    add_body_schemas(app.openapi_schema.components)
    return app
