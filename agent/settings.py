"""The agent's settings, read once at start-up from ``AGENT_*`` or seed variables or secret files.

Durations accept ``250ms``, ``15s``, ``30m``, ``1h``, ``1h30m``, ``7d`` or a bare number of
seconds. Only the seed's ``COLLECTION_INTERVAL`` reads a bare number as milliseconds (its
``3600000`` form); ``AGENT_INTERVAL`` wins over it when both are set.
"""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import (
    AliasChoices,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.windows import format_duration, parse_duration

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
SeedDuration = Annotated[timedelta, BeforeValidator(partial(parse_duration, bare_unit="ms"))]
MIN_INTERVAL = timedelta(seconds=1)
MAX_CATCHUP_LIMIT = timedelta(days=35)
CRASH_POINTS = ("after_spool", "after_send")


def _aliases(*names: str) -> AliasChoices:
    return AliasChoices(*names)


def _empty_to_none(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        return None
    return value


class AgentSettings(BaseSettings):
    """Every agent setting; see the module docstring for the duration format."""

    model_config = SettingsConfigDict(
        env_prefix="AGENT_",
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
    )

    enabled: bool = Field(
        default=True,
        validation_alias=_aliases("AGENT_ENABLED", "ENABLE_USAGE_REPORTING", "enabled"),
        description="Whether reports are collected and sent (boolean).",
    )
    customer_id: str | None = Field(
        default=None,
        validation_alias=_aliases("AGENT_CUSTOMER_ID", "CUSTOMER_ID", "customer_id"),
        description="Customer this instance bills to (identifier); required.",
    )
    instance_id: str | None = Field(
        default=None,
        validation_alias=_aliases("AGENT_INSTANCE_ID", "INSTANCE_ID", "instance_id"),
        description="This customer instance (identifier); required.",
    )
    collector_url: str | None = Field(
        default=None,
        validation_alias=_aliases("AGENT_COLLECTOR_URL", "BILLING_API_URL", "collector_url"),
        description="Base URL of the collector (URL); reports go to {url}/api/usage/report.",
    )
    collector_token: SecretStr | None = Field(
        default=None, description="Bearer token for the collector (secret); optional."
    )
    ca_bundle: Path | None = Field(
        default=None, description="PEM CA bundle that verifies the collector's certificate (path)."
    )
    insecure_skip_verify: bool = Field(
        default=False, description="Skip TLS verification of the collector (boolean; tests only)."
    )
    interval: Duration = Field(
        default=timedelta(hours=1),
        validation_alias=_aliases("AGENT_INTERVAL", "interval"),
        description=f"Report window length (duration, at least {format_duration(MIN_INTERVAL)}).",
    )
    seed_interval: SeedDuration | None = Field(
        default=None,
        validation_alias=_aliases("COLLECTION_INTERVAL", "seed_interval"),
        description=(
            "The seed's name for the window length (duration; a bare number is milliseconds, "
            "e.g. 3600000); AGENT_INTERVAL wins when both are set."
        ),
    )
    prometheus_url: str | None = Field(default=None, description="Prometheus base URL (URL).")
    mqtt_messages_query: str = Field(
        default="mqtt_messages_received_total",
        description="Selector of the raw MQTT message counter series (PromQL series selector).",
    )
    storage_bytes_query: str = Field(
        default="sum(kubelet_volume_stats_used_bytes)",
        description="PromQL expression giving used storage as one series (bytes).",
    )
    api_requests_query: str | None = Field(
        default=None,
        description="Selector of API request counter series (PromQL); empty = not collected.",
    )
    device_api_url: str | None = Field(default=None, description="Device list URL (URL).")
    device_api_token: SecretStr | None = Field(
        default=None, description="Bearer token for the device API (secret); optional."
    )
    active_statuses: str = Field(
        default="active,online",
        description="Device statuses counted as active and billed (comma list, case-insensitive).",
    )
    device_page_limit: int = Field(
        default=1000, ge=1, description="Most device API pages read per cycle (pages)."
    )
    metrics_url: str | None = Field(
        default=None,
        description="A /metrics endpoint scraped directly when there is no Prometheus (URL).",
    )
    state_dir: Path = Field(
        default=Path("./agent-state"), description="Directory for the agent's state (path)."
    )
    query_offset: Duration | None = Field(
        default=None,
        description=(
            "Wait after a window's end before collecting it, so the last scrape is in "
            "(duration); empty = one scrape interval."
        ),
    )
    jitter: Duration | None = Field(
        default=None,
        description=(
            "Largest random delay added to each window's collection and send time (duration); "
            "empty = 10% of the interval."
        ),
    )
    max_catchup: Duration = Field(
        default=timedelta(days=7),
        description=(
            "How far back missed windows are collected after downtime (duration, at most 35d, "
            "Stripe's limit for past usage)."
        ),
    )
    partial_after: Duration = Field(
        default=timedelta(hours=1),
        description=(
            "How long after its end a window whose device API or /metrics scrape keeps failing "
            "is retried before it is sent partial (duration); a window whose Prometheus "
            "queries fail waits for Prometheus, up to AGENT_MAX_CATCHUP."
        ),
    )
    spool_max_reports: int = Field(
        default=1000,
        ge=2,
        description=(
            "Reports waiting in the spool before the oldest are compacted into one (count)."
        ),
    )
    leader_election: bool = Field(
        default=False,
        description="Elect one reporting agent through a coordination.k8s.io Lease (boolean).",
    )
    lease_name: str = Field(
        default="usage-agent", description="Name of the Lease in the agent's namespace (name)."
    )
    lease_duration: Duration = Field(
        default=timedelta(seconds=15),
        description="How long a leader's Lease holds without renewal (duration).",
    )
    lease_renew: Duration = Field(
        default=timedelta(seconds=5),
        description="How often the leader renews and followers check the Lease (duration).",
    )
    pod_name: str | None = Field(
        default=None,
        validation_alias=_aliases("AGENT_POD_NAME", "HOSTNAME", "pod_name"),
        description="This agent's identity as Lease holder (name; downward API metadata.name).",
    )
    namespace: str | None = Field(
        default=None,
        description="The agent's namespace (name; downward API); empty = the service account's.",
    )
    namespace_file: Path = Field(
        default=Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace"),
        description="File naming the pod's namespace when AGENT_NAMESPACE is empty (path).",
    )
    kubeconfig: Path | None = Field(
        default=None,
        description="kubeconfig used outside a cluster (path); empty = in-cluster config.",
    )
    shutdown_grace: Duration = Field(
        default=timedelta(seconds=8),
        description=(
            "Longest wait on SIGTERM for the in-flight step before exiting (duration, < 10s); "
            "a cut-short report stays in the spool."
        ),
    )
    test_crash_at: str | None = Field(
        default=None,
        description=(
            "TEST ONLY: kill the process with SIGKILL at a crash point, 'after_spool' or "
            "'after_send' (name); never set in production."
        ),
    )
    scrape_interval: Duration = Field(
        default=timedelta(seconds=15),
        description=(
            "Prometheus scrape interval (duration): the samples a window is expected to hold, "
            "and the grid step of a storage expression that cannot be read sample by sample."
        ),
    )
    baseline_lookback: Duration = Field(
        default=timedelta(days=1),
        description="How far before a window to look for a counter's baseline sample (duration).",
    )
    http_timeout: Duration = Field(
        default=timedelta(seconds=10), description="Timeout of each HTTP request (duration)."
    )
    query_max_series: int = Field(
        default=10_000, ge=1, description="Most series one Prometheus query may return (series)."
    )
    query_max_samples: int = Field(
        default=2_000_000,
        ge=1,
        description="Most samples one Prometheus query may return (samples).",
    )
    send_attempts: int = Field(
        default=5, ge=1, description="Send attempts per report for `run --once` (count)."
    )
    retry_initial: Duration = Field(
        default=timedelta(seconds=1),
        description="First retry delay after a send failure (duration).",
    )
    retry_max: Duration = Field(
        default=timedelta(minutes=5), description="Longest delay between send retries (duration)."
    )
    metrics_host: str = Field(
        default="0.0.0.0",  # noqa: S104 - the pod's probes and Prometheus reach it from outside
        description="Address /metrics and /healthz listen on (IP address).",
    )
    metrics_port: int = Field(
        default=9102,
        ge=0,
        le=65535,
        description="Port of the agent's own /metrics and /healthz (TCP port; 0 = any free port).",
    )
    log_level: str = Field(default="info", description="debug, info, warning or error (level).")

    @field_validator(
        "customer_id",
        "instance_id",
        "collector_url",
        "collector_token",
        "ca_bundle",
        "prometheus_url",
        "api_requests_query",
        "device_api_url",
        "device_api_token",
        "metrics_url",
        "query_offset",
        "jitter",
        "seed_interval",
        "pod_name",
        "namespace",
        "kubeconfig",
        "test_crash_at",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return _empty_to_none(value)

    @field_validator("interval", "seed_interval")
    @classmethod
    def _interval_floor(cls, value: timedelta | None, info: ValidationInfo) -> timedelta | None:
        if value is not None and value < MIN_INTERVAL:
            raise ValueError(
                f"{_setting(info)} must be at least {format_duration(MIN_INTERVAL)}, got "
                f"{format_duration(value) if value >= timedelta(0) else value}: a bare number is "
                + ("milliseconds" if info.field_name == "seed_interval" else "seconds")
            )
        return value

    @field_validator(
        "scrape_interval",
        "http_timeout",
        "lease_duration",
        "lease_renew",
        "shutdown_grace",
        "baseline_lookback",
        "retry_initial",
        "retry_max",
    )
    @classmethod
    def _positive(cls, value: timedelta, info: ValidationInfo) -> timedelta:
        if value <= timedelta(0):
            raise ValueError(f"{_setting(info)} must be a positive duration, e.g. 10s")
        return value

    @field_validator("query_offset", "jitter", "partial_after")
    @classmethod
    def _not_negative(cls, value: timedelta | None, info: ValidationInfo) -> timedelta | None:
        if value is not None and value < timedelta(0):
            raise ValueError(f"{_setting(info)} must not be negative")
        return value

    @model_validator(mode="after")
    def _effective_durations(self) -> Self:
        if self.seed_interval is not None and "interval" not in self.model_fields_set:
            self.interval = self.seed_interval
        if self.retry_max < self.retry_initial:
            raise ValueError(
                f"AGENT_RETRY_MAX ({format_duration(self.retry_max)}) must not be shorter than "
                f"AGENT_RETRY_INITIAL ({format_duration(self.retry_initial)})"
            )
        return self

    @field_validator("max_catchup")
    @classmethod
    def _catchup_within_stripe_limit(cls, value: timedelta) -> timedelta:
        if value < timedelta(0) or value > MAX_CATCHUP_LIMIT:
            raise ValueError(
                "AGENT_MAX_CATCHUP must be between 0s and 35d (Stripe accepts usage up to 35 days "
                "old)"
            )
        return value

    @field_validator("test_crash_at")
    @classmethod
    def _known_crash_point(cls, value: str | None) -> str | None:
        if value is not None and value not in CRASH_POINTS:
            raise ValueError(f"must be one of {', '.join(CRASH_POINTS)}")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().lower()
        if level not in {"debug", "info", "warning", "error"}:
            raise ValueError("must be debug, info, warning or error")
        return level

    @property
    def effective_query_offset(self) -> timedelta:
        """The query offset, one scrape interval unless set."""
        return self.scrape_interval if self.query_offset is None else self.query_offset

    @property
    def effective_jitter(self) -> timedelta:
        """The largest send jitter, 10% of the interval unless set."""
        return self.interval / 10 if self.jitter is None else self.jitter

    @property
    def active_status_set(self) -> frozenset[str]:
        """The active statuses, lower-cased."""
        return frozenset(s.strip().lower() for s in self.active_statuses.split(",") if s.strip())


def _setting(info: ValidationInfo) -> str:
    """The variable to fix for the field being validated."""
    name = info.field_name or "?"
    return "COLLECTION_INTERVAL" if name == "seed_interval" else "AGENT_" + name.upper()


def setting_errors(error: ValidationError) -> list[str]:
    """One line per invalid setting, each naming the variable to fix."""
    lines = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        if field in AgentSettings.model_fields:
            field = "COLLECTION_INTERVAL" if field == "seed_interval" else "AGENT_" + field.upper()
        message = str(item["msg"]).removeprefix("Value error, ")
        lines.append(f"{field}: {message}" if field else message)
    return lines


def load_settings(secrets_dir: Path | None = None, **overrides: Any) -> AgentSettings:
    """Build the settings once: environment, then files in ``secrets_dir``, then ``overrides``."""
    if secrets_dir is not None:
        return AgentSettings(_secrets_dir=secrets_dir, **overrides)  # type: ignore[call-arg]
    return AgentSettings(**overrides)
