"""Builds the running agent from its settings: the one place that creates clients and files."""

from __future__ import annotations

import os
import random
import signal
import ssl
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import httpx
import structlog
from prometheus_client import CollectorRegistry

import agent
from agent.adapters.boundary_state import SqliteBoundaryStore
from agent.adapters.collector_client import CollectorClient
from agent.adapters.counter_state import SqliteCounterMemoryStore
from agent.adapters.device_api import DeviceApiSource
from agent.adapters.kube import KubeApi
from agent.adapters.metrics_scrape import MetricsScrapeSource
from agent.adapters.prometheus import PrometheusSource
from agent.adapters.scrape_state import SqliteBaselineStore, migrate_json_baselines
from agent.adapters.spool import Spool
from agent.adapters.state_db import StateDb
from agent.errors import ConfigurationError
from agent.loop import AgentLoop
from agent.services.backoff import RetryPolicy
from agent.services.boundaries import KnownBoundaries
from agent.services.catchup import CatchUp, Schedule
from agent.services.collect import ReportCollector
from agent.services.delivery import SpoolDelivery
from agent.services.identity import own_namespace, resolve_identity
from agent.services.leader import LeaderElector
from agent.services.providers import DeviceCount, PrometheusCounter, PrometheusPeak
from agent.services.scraped_counters import ScrapedCounters
from agent.services.sources import MetricProvider
from agent.services.spooling import ReportSpool
from agent.services.telemetry import AgentMetrics, Health
from agent.settings import AgentSettings
from common.catalogue import MetricCatalogue
from common.clock import Clock

log = structlog.get_logger(__name__)


@dataclass
class Runtime:
    """The wired agent and the resources to release when it stops."""

    loop: AgentLoop
    collector: ReportCollector
    metrics: AgentMetrics
    health: Health
    db: StateDb
    resources: AsyncExitStack = field(default_factory=AsyncExitStack)

    async def aclose(self) -> None:
        await self.resources.aclose()


def check_collector_url(settings: AgentSettings) -> str:
    """The collector URL, or a start-up error naming the setting."""
    url = settings.collector_url
    if not url:
        raise ConfigurationError("no collector URL: set AGENT_COLLECTOR_URL (or BILLING_API_URL)")
    if not url.startswith(("http://", "https://")):
        raise ConfigurationError(f"AGENT_COLLECTOR_URL must be an http(s) URL, got {url!r}")
    return url


def kube_api_from_settings(settings: AgentSettings, stack: AsyncExitStack) -> KubeApi:
    """The Kubernetes API: a kubeconfig when AGENT_KUBECONFIG is set, else in-cluster."""
    from kubernetes import client as kube_client
    from kubernetes import config as kube_config

    try:
        if settings.kubeconfig is not None:
            api_client = kube_config.new_client_from_config(config_file=str(settings.kubeconfig))  # type: ignore[no-untyped-call]
        else:
            configuration = kube_client.Configuration()
            kube_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            api_client = kube_client.ApiClient(configuration)
    except (kube_config.ConfigException, OSError) as exc:
        raise ConfigurationError(
            f"cannot configure the Kubernetes API client ({exc}); run in a pod with a "
            "service account token, or set AGENT_KUBECONFIG"
        ) from exc
    stack.callback(api_client.close)
    return KubeApi(api_client, timeout=settings.http_timeout)


def crash_point_from_settings(settings: AgentSettings) -> Callable[[str], None]:
    """TEST ONLY (AGENT_TEST_CRASH_AT): SIGKILL this process at the named point."""
    target = settings.test_crash_at

    def crash(point: str) -> None:
        if point == target:
            log.warning("test_crash_point", point=point)
            os.kill(os.getpid(), signal.SIGKILL)

    return crash


def collector_tls(settings: AgentSettings) -> ssl.SSLContext | bool:
    """How the collector's certificate is verified: a CA bundle, the system store, or not at all."""
    if settings.insecure_skip_verify:
        log.warning("collector_tls_unverified", setting="AGENT_INSECURE_SKIP_VERIFY")
        return False
    if settings.ca_bundle is not None:
        if not settings.ca_bundle.is_file():
            raise ConfigurationError(f"AGENT_CA_BUNDLE {settings.ca_bundle} is not a file")
        return ssl.create_default_context(cafile=str(settings.ca_bundle))
    return True


def _secret(value: object) -> str | None:
    getter = getattr(value, "get_secret_value", None)
    return getter() if getter else None


def build_providers(
    settings: AgentSettings,
    http: httpx.AsyncClient,
    clock: Clock,
    stack: AsyncExitStack,
    db: StateDb,
) -> tuple[list[MetricProvider], list[ScrapedCounters]]:
    """Every provider the settings configure, and the scrape providers that need priming."""
    providers: list[MetricProvider] = []
    scraped: list[ScrapedCounters] = []
    if settings.device_api_url:
        providers.append(
            DeviceCount(
                DeviceApiSource(
                    http,
                    settings.device_api_url,
                    active_statuses=settings.active_status_set,
                    page_limit=settings.device_page_limit,
                    token=_secret(settings.device_api_token),
                )
            )
        )
    counters = {"mqtt_messages": settings.mqtt_messages_query.strip()}
    if settings.api_requests_query:
        counters["api_requests"] = settings.api_requests_query.strip()
    counters = {metric: query for metric, query in counters.items() if query}
    if settings.prometheus_url:
        if settings.metrics_url:
            log.warning("metrics_url_ignored", reason="AGENT_PROMETHEUS_URL is set and preferred")
        prometheus = PrometheusSource(
            settings.prometheus_url,
            timeout=settings.http_timeout,
            baseline_lookback=settings.baseline_lookback,
            scrape_interval=settings.scrape_interval,
            max_series=settings.query_max_series,
            max_samples=settings.query_max_samples,
        )
        stack.callback(prometheus.close)
        providers.extend(
            PrometheusCounter(
                m,
                prometheus,
                q,
                SqliteCounterMemoryStore(db, m),
                scrape_interval=settings.scrape_interval,
            )
            for m, q in counters.items()
        )
        if settings.storage_bytes_query.strip():
            providers.append(
                PrometheusPeak("storage_gb", prometheus, settings.storage_bytes_query.strip())
            )
    elif settings.metrics_url and counters:
        source = MetricsScrapeSource(http, settings.metrics_url)
        store = SqliteBaselineStore(db)
        scraped.append(ScrapedCounters(source, store, counters, clock))
        providers.extend(scraped)
    if not providers:
        raise ConfigurationError(
            "no usage source configured: set AGENT_PROMETHEUS_URL, AGENT_METRICS_URL "
            "or AGENT_DEVICE_API_URL"
        )
    return providers, scraped


async def build_runtime(
    settings: AgentSettings,
    clock: Clock,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    registry: CollectorRegistry | None = None,
    kube: KubeApi | None = None,
    rng: random.Random | None = None,
) -> Runtime:
    """Wire the agent; ``transport`` replaces the network and ``kube`` the Kubernetes API."""
    collector_url = check_collector_url(settings)
    verify = collector_tls(settings)
    stack = AsyncExitStack()
    try:
        return await _build(
            settings, clock, stack, collector_url, verify, transport, registry, kube, rng
        )
    except BaseException:
        await stack.aclose()
        raise


async def _build(
    settings: AgentSettings,
    clock: Clock,
    stack: AsyncExitStack,
    collector_url: str,
    verify: ssl.SSLContext | bool,
    transport: httpx.AsyncBaseTransport | None,
    registry: CollectorRegistry | None,
    kube: KubeApi | None,
    rng: random.Random | None,
) -> Runtime:
    rng = rng or random.Random()
    metrics = AgentMetrics(registry or CollectorRegistry())
    metrics.is_leader.set(0 if settings.leader_election else 1)
    health = Health(clock, settings.interval, enabled=settings.enabled)
    namespace = own_namespace(settings.namespace, settings.namespace_file)
    needs_kube = settings.leader_election or not (settings.customer_id and settings.instance_id)
    if needs_kube and kube is None and (namespace is not None or settings.leader_election):
        kube = kube_api_from_settings(settings, stack)
    identity = await resolve_identity(
        settings.customer_id,
        settings.instance_id,
        namespace=namespace,
        read_namespace=kube.read_namespace if kube is not None else None,
    )
    log.info("identity_resolved", source=identity.source, customer_id=identity.customer_id)
    db = StateDb.in_dir(settings.state_dir)
    stack.callback(db.close)
    if migrate_json_baselines(settings.state_dir, db):
        log.info("scrape_baselines_migrated", to=str(db.path))
    http = httpx.AsyncClient(timeout=settings.http_timeout.total_seconds(), transport=transport)
    stack.push_async_callback(http.aclose)
    providers, scraped = build_providers(settings, http, clock, stack, db)
    collector = ReportCollector(
        customer_id=identity.customer_id,
        instance_id=identity.instance_id,
        providers=providers,
        agent_version=agent.__version__,
        on_source_error=lambda source: metrics.source_errors.labels(source).inc(),
    )
    collector_http = httpx.AsyncClient(
        timeout=settings.http_timeout.total_seconds(), transport=transport, verify=verify
    )
    stack.push_async_callback(collector_http.aclose)
    sender = CollectorClient(
        collector_http, collector_url, token=_secret(settings.collector_token), clock=clock
    )
    crash = crash_point_from_settings(settings)
    boundaries = KnownBoundaries(SqliteBoundaryStore(db), clock)
    spool = ReportSpool(
        Spool(db),
        max_reports=settings.spool_max_reports,
        catalogue=MetricCatalogue.default(),
        clock=clock,
        metrics=metrics,
        boundaries=boundaries,
    )
    schedule = Schedule(
        interval=settings.interval,
        query_offset=settings.effective_query_offset,
        max_catchup=settings.max_catchup,
        partial_after=settings.partial_after,
    )
    catchup = CatchUp(
        source=collector,
        db=db,
        spool=spool,
        clock=clock,
        schedule=schedule,
        metrics=metrics,
        boundaries=boundaries,
        crash_point=crash,
    )
    delivery = SpoolDelivery(
        spool=spool,
        sender=sender,
        clock=clock,
        metrics=metrics,
        health=health,
        retry=RetryPolicy(
            initial=settings.retry_initial.total_seconds(),
            maximum=settings.retry_max.total_seconds(),
        ),
        rng=rng,
        crash_point=crash,
        boundaries=boundaries,
    )
    elector = None
    if settings.leader_election:
        if kube is None or namespace is None:
            raise ConfigurationError(
                "AGENT_LEADER_ELECTION needs the agent's namespace: set AGENT_NAMESPACE"
            )
        if not settings.pod_name:
            raise ConfigurationError("AGENT_LEADER_ELECTION needs AGENT_POD_NAME (downward API)")
        elector = LeaderElector(
            api=kube,
            namespace=namespace,
            lease_name=settings.lease_name,
            identity=settings.pod_name,
            clock=clock,
            lease_duration=settings.lease_duration,
            db=db,
            spool=spool.spool,
            metrics=metrics,
            health=health,
            boundaries=boundaries,
        )
    loop = AgentLoop(
        catchup=catchup,
        delivery=delivery,
        clock=clock,
        schedule=schedule,
        jitter=settings.effective_jitter,
        rng=rng,
        elector=elector,
        renew_period=settings.lease_renew,
        startup=[s.prime for s in scraped],
    )
    return Runtime(
        loop=loop, collector=collector, metrics=metrics, health=health, db=db, resources=stack
    )
