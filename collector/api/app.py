"""The Litestar application, assembled from settings and injected I/O."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import stripe
import structlog
from litestar import Litestar
from litestar.di import Provide
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from collector.adapters.db.corrections import CorrectionStore
from collector.adapters.db.credentials import CredentialStore
from collector.adapters.db.customer_view import CustomerViewStore
from collector.adapters.db.engine import create_engine
from collector.adapters.db.leadership import AdvisoryLeaderLock, SingleProcessLock
from collector.adapters.db.links import LinkStore
from collector.adapters.db.outbox import OutboxStore
from collector.adapters.db.rate_buckets import RateBucketStore
from collector.adapters.db.reports import ReportStore
from collector.adapters.stripe.client import StripeConnection
from collector.api.admin import AdminController
from collector.api.auth import AuthenticationMiddleware, fail_closed
from collector.api.body_shape import BodyShape
from collector.api.console import console_routes, console_templates
from collector.api.customers import CustomersController
from collector.api.errors import make_exception_handler
from collector.api.forwarding import ForwardingController
from collector.api.health import SchemaReadiness, live, metrics, ready
from collector.api.ingest_lane import IngestLane
from collector.api.limits import BodyDeadline
from collector.api.openapi import add_body_schemas, openapi_config
from collector.api.query_params import refuse_stray_query_parameters
from collector.api.reconciliation import ReconciliationController
from collector.api.security_docs import document_security
from collector.api.stripe_routes import BillingController, StripeWebhookController
from collector.api.usage import UsageController
from collector.secrets import register_settings_secrets
from collector.services.ageing import AgeingWatch
from collector.services.auth import Authenticator
from collector.services.credentials import CredentialService
from collector.services.customers import CustomersService
from collector.services.drift import ReconciliationList
from collector.services.forwarder import Forwarder, ForwarderConfig
from collector.services.forwarding_setup import make_limiter, make_sender, stripe_connection
from collector.services.forwarding_status import ForwardingStatusService
from collector.services.ingest import IngestService
from collector.services.instances import InstanceService
from collector.services.leader import Leadership, SingletonTask
from collector.services.linking import LinkingService
from collector.services.period_hints import PeriodHints
from collector.services.queue_gauges import QueueGauges
from collector.services.ratelimit import CallLimiter, RateLimiter, SharedRateLimiter
from collector.services.reconcile import ReconcileService
from collector.services.reconciler import Reconciler
from collector.services.subscriptions import SubscriptionItems
from collector.services.token_buckets import RequestLimits, SharedTokenBuckets, TokenBuckets
from collector.services.usage import UsageService
from collector.services.webhooks import WebhookService
from collector.settings import CollectorSettings, StripeMode
from collector.telemetry import CollectorMetrics
from common.catalogue import MetricCatalogue
from common.clock import Clock, SystemClock
from common.semantics import Semantics

log = structlog.get_logger("collector")
METERS_TTL = 300.0
"""Seconds the background reconciler reuses Stripe's meter list (saves a read per customer)."""


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
    corrections: CorrectionStore
    instances: InstanceService
    forwarder: Forwarder | None
    forwarding: ForwardingStatusService
    webhooks: WebhookService
    stripe: StripeConnection | None
    reconciler: ReconcileService
    credentials: CredentialService
    authenticator: Authenticator
    rate_limits: RequestLimits
    linking: LinkingService
    customers: CustomersService
    queue_gauges: QueueGauges
    reconciliation: ReconciliationList
    reconcile_loop: Reconciler | None
    """The background reconciler; None without Stripe, with forwarding off or interval 0."""
    leadership: Leadership
    """Runs the reconciler and the ageing warnings on one replica at a time."""

    async def close(self) -> None:
        """Stop the writer and the worker's clients, then close the database pool."""
        await self.store.close()
        if self.forwarder is not None:
            await self.forwarder.aclose()
        if self.stripe is not None:
            await self.stripe.aclose()
        await self.rate_limits.close()
        await self.leadership.close()
        await self.engine.dispose()


def build_services(
    settings: CollectorSettings,
    *,
    clock: Clock | None = None,
    engine: AsyncEngine | None = None,
    registry: CollectorRegistry | None = None,
    forwarder: Forwarder | None = None,
) -> Services:
    # Shared rate limits use the database's clock, unless a test injected its own clock.
    database_clock = clock is None
    clock = clock or SystemClock()
    engine = engine or create_engine(
        settings.async_database_url(), pool_size=settings.database_pool_size
    )
    store = ReportStore(engine)
    telemetry = CollectorMetrics(registry or CollectorRegistry())
    catalogue = settings.catalogue()
    outbox = OutboxStore(engine, database_clock=database_clock)
    set_metrics = [n for n in catalogue.names if catalogue[n].semantics is Semantics.SET]
    links = LinkStore(engine, set_metrics)
    corrections = CorrectionStore(engine, set_metrics)
    active_clock = clock
    connection = stripe_connection(settings) if settings.stripe_api_key is not None else None
    client = connection.client if connection is not None else None
    items = SubscriptionItems(client, links, clock) if client is not None else None
    watch = AgeingWatch(
        corrections, clock, telemetry, warning_days=settings.stripe_age_warning_days
    )
    usage = UsageService(store, catalogue, clock, max_limit=settings.history_max_limit, links=links)

    store.writer.set_outbox(active_clock.now)
    credential_store = CredentialStore(engine)
    shared_limits = None if settings.is_sqlite else RateBucketStore(engine)
    view = CustomerViewStore(engine)
    forwarding = ForwardingStatusService(settings, outbox, links, clock, items, corrections, watch)
    settle = timedelta(seconds=settings.reconcile_settle)
    reconcile_loop = _make_reconcile_loop(
        settings,
        client,
        ReconcileService(
            client,
            settings.stripe_mode,
            links,
            outbox,
            usage,
            catalogue,
            clock,
            view,
            settle=settle,
            limiter=_reconcile_limiter(settings, shared_limits, clock, database_clock),
            meters_ttl=METERS_TTL,
        ),
        links,
        view,
        telemetry,
        clock,
        catalogue.names,
    )
    leadership = _make_leadership(settings, engine, telemetry, clock, watch, reconcile_loop)
    return Services(
        credentials=CredentialService(credential_store, clock),
        authenticator=Authenticator(
            credential_store,
            clock,
            cache_ttl=settings.auth_cache_ttl,
            touch_interval=settings.auth_last_used_interval,
            disabled=settings.auth_disabled,
        ),
        rate_limits=(
            TokenBuckets(settings.rate_limit_rps, settings.rate_limit_burst, clock)
            if shared_limits is None
            else SharedTokenBuckets(
                shared_limits,
                settings.rate_limit_rps,
                settings.rate_limit_burst,
                clock,
                database_clock=database_clock,
            )
        ),
        settings=settings,
        clock=clock,
        engine=engine,
        store=store,
        telemetry=telemetry,
        queue_gauges=QueueGauges(outbox, telemetry, clock, leads=leadership.runs_singletons),
        ingest=IngestService(
            store,
            catalogue,
            clock,
            telemetry,
            legacy_window=settings.legacy_window,
            max_body_bytes=settings.max_body_bytes,
            hints=PeriodHints(links, clock),
        ),
        usage=usage,
        outbox=outbox,
        links=links,
        forwarding=forwarding,
        linking=LinkingService(links, clock, items, client),
        customers=CustomersService(view, links, clock, forwarding.unbillable),
        corrections=corrections,
        instances=InstanceService(corrections, clock),
        webhooks=WebhookService(
            settings.stripe_webhook_secret.get_secret_value()
            if settings.stripe_webhook_secret
            else None,
            links,
            corrections,
            clock,
            telemetry,
            client=client,
        ),
        stripe=connection,
        reconciler=ReconcileService(
            client,
            settings.stripe_mode,
            links,
            outbox,
            usage,
            catalogue,
            clock,
            view,
            settle=settle,
        ),
        reconciliation=ReconciliationList(view),
        reconcile_loop=reconcile_loop,
        leadership=leadership,
        forwarder=forwarder
        or _make_forwarder(
            settings,
            client,
            items,
            outbox,
            links,
            catalogue,
            clock,
            telemetry,
            make_limiter(settings, shared_limits, clock, database_clock=database_clock),
            leadership,
        ),
    )


def _make_leadership(
    settings: CollectorSettings,
    engine: AsyncEngine,
    telemetry: CollectorMetrics,
    clock: Clock,
    watch: AgeingWatch,
    reconcile_loop: Reconciler | None,
) -> Leadership:
    """The election (PostgreSQL's advisory lock; SQLite's one process) and its tasks."""
    identity = f"{socket.gethostname()}-{os.getpid()}"
    tasks = [SingletonTask("ageing", watch.run, watch.step_down)]
    if reconcile_loop is not None:
        tasks.append(SingletonTask("reconciler", reconcile_loop.run, reconcile_loop.step_down))
    lock = (
        SingleProcessLock()
        if settings.is_sqlite
        else AdvisoryLeaderLock(engine.url, check=settings.leader_check, name=identity)
    )
    return Leadership(
        lock, telemetry, identity=identity, check=settings.leader_check, tasks=tasks, clock=clock
    )


def _reconcile_limiter(
    settings: CollectorSettings,
    shared: RateBucketStore | None,
    clock: Clock,
    database_clock: bool,
) -> CallLimiter:
    """``COLLECTOR_RECONCILE_MAX_RPS`` for every replica together, or this process on SQLite."""
    if shared is None:
        return RateLimiter(settings.reconcile_max_rps, clock)
    return SharedRateLimiter(
        shared,
        settings.reconcile_max_rps,
        clock,
        lease=settings.call_slot_lease,
        name="reconcile",
        database_clock=database_clock,
    )


def _make_reconcile_loop(
    settings: CollectorSettings,
    client: stripe.StripeClient | None,
    service: ReconcileService,
    links: LinkStore,
    view: CustomerViewStore,
    telemetry: CollectorMetrics,
    clock: Clock,
    metrics: Sequence[str],
) -> Reconciler | None:
    """The background reconciler, or ``None`` without Stripe, with forwarding off, or off."""
    if client is None or settings.stripe_mode is StripeMode.OFF:
        return None
    if settings.reconcile_interval <= 0:
        return None
    return Reconciler(
        service,
        links,
        view,
        telemetry,
        clock,
        metrics,
        interval=settings.reconcile_interval,
    )


def _make_forwarder(
    settings: CollectorSettings,
    client: stripe.StripeClient | None,
    items: SubscriptionItems | None,
    outbox: OutboxStore,
    links: LinkStore,
    catalogue: MetricCatalogue,
    clock: Clock,
    telemetry: CollectorMetrics,
    limiter: CallLimiter,
    leadership: Leadership,
) -> Forwarder | None:
    """The outbox worker, or ``None`` while forwarding is off or no Stripe key is configured."""
    if settings.stripe_mode is StripeMode.OFF or client is None:
        return None
    config = ForwarderConfig(
        mode=settings.stripe_mode.value,
        max_rps=settings.stripe_max_rps,
        concurrency=settings.stripe_concurrency,
        coalesce=settings.stripe_coalesce,
        backoff_cap=settings.stripe_backoff_cap,
        idle_sleep=settings.forwarder_idle_sleep,
        lease=timedelta(seconds=settings.stripe_lease),
        lease_renewal=timedelta(seconds=settings.stripe_lease_renewal),
        release_leases_on_start=settings.is_sqlite,
        period_refresh=timedelta(seconds=settings.stripe_period_refresh),
    )
    sender = make_sender(settings, client, links, clock)
    return Forwarder(
        outbox,
        links,
        sender,
        catalogue,
        clock,
        telemetry,
        config,
        periods=items,
        limiter=limiter,
        leads=leadership.runs_singletons,
    )


def create_app(settings: CollectorSettings, services: Services | None = None) -> Litestar:
    """The collector app; the database schema must already be migrated."""
    register_settings_secrets(settings)
    built = services or build_services(settings)

    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    exception_handler = make_exception_handler(built.telemetry)

    async def warn_if_open() -> None:
        if settings.auth_disabled:
            log.warning(
                "AUTHENTICATION IS DISABLED (COLLECTOR_AUTH_DISABLED=true): anyone who can reach "
                "this collector can report, read and manage usage. Local demos only."
            )

    async def describe_rate_limits() -> None:
        if settings.is_sqlite:
            log.info(
                "SQLite means one replica: COLLECTOR_STRIPE_MAX_RPS and the per-token rate "
                "limits are kept in this process's memory and hold for it alone; run more "
                "replicas only on PostgreSQL",
                stripe_max_rps=settings.stripe_max_rps,
                rate_limit_rps=settings.rate_limit_rps,
            )
        else:
            log.info(
                "rate limits are shared by every replica through PostgreSQL",
                stripe_max_rps=settings.stripe_max_rps,
                rate_limit_rps=settings.rate_limit_rps,
                rate_limit_burst=settings.rate_limit_burst,
            )

    async def start_forwarder() -> None:
        if built.forwarder is not None and settings.forwarder_enabled:
            tasks.append(asyncio.create_task(built.forwarder.run(stop)))
        elif settings.stripe_mode is not StripeMode.OFF and settings.stripe_api_key is None:
            log.warning("no COLLECTOR_STRIPE_API_KEY: reports are stored and forwards wait")

    async def start_queue_gauges() -> None:
        tasks.append(asyncio.create_task(built.queue_gauges.run(stop)))

    async def start_leadership() -> None:
        if built.reconcile_loop is not None:
            log.info(
                "the reconciler compares every linked customer with Stripe each interval",
                interval_s=settings.reconcile_interval,
                settle_s=settings.reconcile_settle,
                max_rps=settings.reconcile_max_rps,
            )
        tasks.append(asyncio.create_task(built.leadership.run(stop)))

    async def dispose() -> None:
        stop.set()
        for task in tasks:
            await task
        await built.authenticator.close()
        await built.close()

    def constant(value: object) -> Provide:
        return Provide(lambda: value, sync_to_thread=False, use_cache=True)

    app = Litestar(
        route_handlers=[
            UsageController,
            ForwardingController,
            CustomersController,
            ReconciliationController,
            BillingController,
            StripeWebhookController,
            AdminController,
            live,
            ready,
            metrics,
            *console_routes(built),
        ],
        template_config=console_templates(),
        dependencies={
            "ingest": constant(built.ingest),
            "usage": constant(built.usage),
            "store": constant(built.store),
            "telemetry": constant(built.telemetry),
            "forwarding": constant(built.forwarding),
            "instances": constant(built.instances),
            "webhooks": constant(built.webhooks),
            "reconciler": constant(built.reconciler),
            "credentials": constant(built.credentials),
            "schema_readiness": constant(SchemaReadiness(built.engine, built.clock)),
            "linking": constant(built.linking),
            "customers": constant(built.customers),
            "reconciliation": constant(built.reconciliation),
            "authenticator": constant(built.authenticator),
            "leadership": constant(built.leadership),
        },
        exception_handlers={Exception: exception_handler},
        openapi_config=openapi_config(),
        request_max_body_size=settings.max_body_bytes,
        middleware=[
            BodyDeadline(settings.body_read_timeout),
            AuthenticationMiddleware(built.authenticator, built.rate_limits),
            BodyShape(settings.max_body_bytes),
        ],
        guards=[fail_closed],
        on_startup=[
            warn_if_open,
            describe_rate_limits,
            start_leadership,
            start_forwarder,
            start_queue_gauges,
        ],
        before_request=refuse_stray_query_parameters,
        on_shutdown=[dispose],
        logging_config=None,
        debug=False,
    )
    add_body_schemas(app.openapi_schema.components)
    document_security(app)
    if settings.ingest_lane:
        app.asgi_handler = IngestLane(
            app.asgi_handler,
            litestar=app,
            ingest=built.ingest,
            authenticator=built.authenticator,
            limits=built.rate_limits,
            body_timeout=settings.body_read_timeout,
            max_body_bytes=settings.max_body_bytes,
            on_error=exception_handler,
        )
    return app
