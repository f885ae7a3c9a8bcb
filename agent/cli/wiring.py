"""Builds the running agent from its settings: the one place that creates clients and files."""

from __future__ import annotations

import ssl
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import httpx
import structlog

import agent
from agent.adapters.collector_client import CollectorClient
from agent.adapters.device_api import DeviceApiSource
from agent.adapters.metrics_scrape import MetricsScrapeSource
from agent.adapters.prometheus import PrometheusSource
from agent.adapters.scrape_state import JsonBaselineStore
from agent.errors import ConfigurationError
from agent.loop import AgentLoop, RetryPolicy
from agent.services.collect import ReportCollector
from agent.services.providers import DeviceCount, PrometheusCounter, PrometheusPeak
from agent.services.scraped_counters import ScrapedCounters
from agent.services.sources import MetricProvider
from agent.settings import AgentSettings
from common.clock import Clock

log = structlog.get_logger(__name__)


@dataclass
class Runtime:
    """The wired agent and the resources to release when it stops."""

    loop: AgentLoop
    collector: ReportCollector
    resources: AsyncExitStack = field(default_factory=AsyncExitStack)

    async def aclose(self) -> None:
        await self.resources.aclose()


def check_identity(settings: AgentSettings) -> tuple[str, str, str]:
    """The customer id, instance id and collector URL, or a start-up error naming the setting."""
    problems = []
    if not settings.customer_id:
        problems.append("no customer id: set AGENT_CUSTOMER_ID (or CUSTOMER_ID)")
    if not settings.instance_id:
        problems.append("no instance id: set AGENT_INSTANCE_ID (or INSTANCE_ID)")
    url = settings.collector_url
    if not url:
        problems.append("no collector URL: set AGENT_COLLECTOR_URL (or BILLING_API_URL)")
    elif not url.startswith(("http://", "https://")):
        problems.append(f"AGENT_COLLECTOR_URL must be an http(s) URL, got {url!r}")
    if problems:
        raise ConfigurationError("; ".join(problems))
    return str(settings.customer_id), str(settings.instance_id), str(url)


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
    settings: AgentSettings, http: httpx.AsyncClient, clock: Clock, stack: AsyncExitStack
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
        providers.extend(PrometheusCounter(m, prometheus, q) for m, q in counters.items())
        if settings.storage_bytes_query.strip():
            providers.append(
                PrometheusPeak("storage_gb", prometheus, settings.storage_bytes_query.strip())
            )
    elif settings.metrics_url and counters:
        source = MetricsScrapeSource(http, settings.metrics_url)
        store = JsonBaselineStore(settings.state_dir)
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
) -> Runtime:
    """Wire the agent; ``transport`` replaces the network in tests."""
    customer_id, instance_id, collector_url = check_identity(settings)
    verify = collector_tls(settings)
    stack = AsyncExitStack()
    http = httpx.AsyncClient(timeout=settings.http_timeout.total_seconds(), transport=transport)
    stack.push_async_callback(http.aclose)
    try:
        providers, scraped = build_providers(settings, http, clock, stack)
    except BaseException:
        await stack.aclose()
        raise
    collector = ReportCollector(
        customer_id=customer_id,
        instance_id=instance_id,
        providers=providers,
        agent_version=agent.__version__,
    )
    collector_http = httpx.AsyncClient(
        timeout=settings.http_timeout.total_seconds(),
        transport=transport,
        verify=verify,
    )
    stack.push_async_callback(collector_http.aclose)
    sender = CollectorClient(
        collector_http, collector_url, token=_secret(settings.collector_token), clock=clock
    )
    loop = AgentLoop(
        source=collector,
        sender=sender,
        clock=clock,
        interval=settings.interval,
        query_offset=settings.query_offset,
        retry=RetryPolicy(
            initial=settings.retry_initial.total_seconds(),
            maximum=settings.retry_max.total_seconds(),
        ),
        startup=[s.prime for s in scraped],
    )
    return Runtime(loop=loop, collector=collector, resources=stack)
