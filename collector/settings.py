"""The collector's settings, read once at start-up from ``COLLECTOR_*`` variables or files."""

from __future__ import annotations

import enum
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from common.catalogue import MetricCatalogue, parse_definitions
from common.errors import SchemaError
from common.windows import parse_duration

# A bare number is seconds, in both components; only the agent's seed COLLECTION_INTERVAL is ms.
Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _as_seconds(value: object) -> object:
    if isinstance(value, str | int | float | timedelta) and not isinstance(value, bool):
        try:
            return parse_duration(value).total_seconds()
        except ValueError:
            return value
    return value


Seconds = Annotated[float, BeforeValidator(_as_seconds)]
"""A duration held as float seconds: ``30s``, ``5m``, ``1h`` or a bare number of seconds."""

LOG_LEVELS = ("debug", "info", "warning", "error")
MIN_SESSION_SECRET = 32
"""Characters a console session secret needs at least (about 128 bits from a hex generator)."""

# The drivers installed with the collector, by backend; a plain scheme gets its driver added.
ASYNC_DRIVERS = {"postgresql": "asyncpg", "sqlite": "aiosqlite"}
_PLAIN_SCHEMES = (
    ("postgresql://", "postgresql+asyncpg://"),
    ("postgres://", "postgresql+asyncpg://"),
    ("sqlite://", "sqlite+aiosqlite://"),
)
DATABASE_URL_FORMS = (
    "use postgresql+asyncpg://user@host:5432/database or sqlite+aiosqlite:///path/to/usage.db"
)


def with_async_driver(url: str) -> str:
    """``url`` with its async driver: postgresql:// and sqlite:// get asyncpg and aiosqlite."""
    for plain, driver in _PLAIN_SCHEMES:
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def database_url_problem(url: str) -> str | None:
    """Why the collector cannot use ``url`` (its password masked), or ``None``."""
    try:
        parsed = make_url(with_async_driver(url.strip()))
    except ArgumentError:
        if "://" not in url and "@" not in url:
            return (
                f"unsupported database URL {url!r}: {DATABASE_URL_FORMS} "
                f"(for this file: sqlite+aiosqlite:///{url})"
            )
        return f"unsupported database URL (not shown, it may hold a password): {DATABASE_URL_FORMS}"
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if ASYNC_DRIVERS.get(backend) != driver:
        shown = parsed.render_as_string(hide_password=True)
        return f"unsupported database URL {shown}: {DATABASE_URL_FORMS}"
    return None


def _first_problem(error: SchemaError) -> str:
    """The first thing wrong with the extra metrics, on one line."""
    cause = error.__cause__
    if isinstance(cause, ValidationError):
        problems = cause.errors()
        first = problems[0]
        where = ".".join(str(part) for part in first["loc"]) or "definition"
        entry = str(error).split(": ", 1)[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return f"{entry}: {where}: {first['msg']}{more}"
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


class StripeMode(enum.StrEnum):
    METER_EVENTS = "meter_events"
    METER_EVENT_STREAM = "meter_event_stream"
    USAGE_RECORDS = "usage_records"
    OFF = "off"


class CollectorSettings(BaseSettings):
    """Every collector setting; durations accept ``30s``, ``5m``, ``1h`` or milliseconds."""

    model_config = SettingsConfigDict(
        env_prefix="COLLECTOR_", extra="ignore", secrets_dir=None, validate_default=True
    )

    database_url: SecretStr = Field(
        default=SecretStr("sqlite+aiosqlite:///./usage.db"),
        description="SQLAlchemy async URL. SQLite (WAL mode) by default; postgresql+asyncpg://... "
        "for production. A plain postgresql:// or sqlite:// URL gets the async driver added.",
    )
    database_pool_size: int = Field(
        default=10, ge=1, description="Connections per process (count)."
    )
    host: str = Field(default="127.0.0.1", description="Address `serve` binds to.")
    port: int = Field(default=3100, ge=1, le=65535, description="TCP port `serve` listens on.")
    log_level: str = Field(default="info", description="debug, info, warning or error.")
    log_json: bool = Field(
        default=True, description="JSON log lines (true) or console text (false)."
    )
    extra_metrics: str = Field(
        default="",
        description="Metrics added to the default catalogue (JSON list of definitions: name, "
        "unit, kind, semantics, price_lookup_key, meter_event_name, optional rounding and "
        "description; see docs/forwarding.md#adding-metrics).",
    )
    legacy_window: Duration = Field(
        default=timedelta(hours=1),
        description="Window length assumed for a legacy report (the seed exporter's body, no "
        "window) (duration).",
    )
    max_body_bytes: int = Field(
        default=65536, ge=1024, description="Largest accepted body (bytes)."
    )
    history_max_limit: int = Field(
        default=1000, ge=1, description="Largest page of history (reports)."
    )

    stripe_api_key: SecretStr | None = Field(
        default=None, description="Stripe secret key (sk_...)."
    )
    stripe_api_base: str | None = Field(
        default=None, description="Base URL for Stripe's api and meter_events hosts (the sandbox)."
    )
    stripe_mode: StripeMode = Field(
        default=StripeMode.METER_EVENTS,
        description="How usage reaches Stripe (name): meter_events, one Billing Meter event per "
        "call; meter_event_stream, v2 meter event sessions, up to 100 events per call; "
        "usage_records, legacy usage records on subscription items (needs `stripe setup "
        "--legacy` prices); off, store and wait, send nothing.",
    )
    stripe_webhook_secret: SecretStr | None = Field(default=None, description="whsec_... secret.")
    stripe_max_rps: float = Field(
        default=20.0,
        gt=0,
        description="Most Stripe calls in any one second (calls/s). Test mode "
        "allows 25/s, live mode 1000/s.",
    )
    stripe_concurrency: int = Field(default=4, ge=1, le=64, description="Calls in flight (count).")
    stripe_coalesce: bool = Field(
        default=True, description="Fold waiting forwards of one customer and metric into one call."
    )
    stripe_timeout: Seconds = Field(
        default=30.0, gt=0, description="Per-call timeout (duration; bare number: seconds)."
    )
    stripe_backoff_cap: Seconds = Field(
        default=300.0,
        gt=0,
        description="Longest wait between retries of one batch (duration; bare number: seconds).",
    )
    stripe_lease: Seconds = Field(
        default=15.0,
        gt=0,
        description="How long a replica's claim on a batch lasts unless renewed "
        "(duration; bare number: seconds): the batches of a replica that died are sent by "
        "another after at most this. The holder renews it every COLLECTOR_STRIPE_LEASE_RENEWAL "
        "while the call is in flight.",
    )
    stripe_lease_renewal: Seconds = Field(
        default=5.0,
        gt=0,
        description="How often a replica renews the claims on the batches it is sending "
        "(duration; bare number: seconds); at most half of COLLECTOR_STRIPE_LEASE, and a third "
        "of it when left unset and the lease is under 15 s. A replica that could not renew for "
        "COLLECTOR_STRIPE_LEASE minus this gives its calls up.",
    )
    stripe_period_refresh: Seconds = Field(
        default=300.0,
        gt=0,
        description="How long usage of a linked customer may wait for an unknown billing period "
        "before the forwarder reads the subscription from Stripe itself "
        "(duration; bare number: seconds).",
    )
    stripe_age_warning_days: float = Field(
        default=7.0,
        ge=0,
        le=34,
        description="Warn this long before waiting usage reaches Stripe's 35-day limit on event "
        "timestamps (days).",
    )
    leader_check: Seconds = Field(
        default=5.0,
        gt=0,
        description="How often a replica tries to become the leader that runs the background "
        "tasks that must run once (reconciler, ageing warnings, subscription reads), and the "
        "leader checks its hold on PostgreSQL (duration; bare number: seconds). Another replica "
        "takes over within about this after the leader dies.",
    )
    forwarder_enabled: bool = Field(
        default=True, description="Run the outbox worker inside `serve` (off: forwards wait)."
    )
    forwarder_idle_sleep: Seconds = Field(
        default=1.0,
        gt=0,
        description="Pause when there is nothing to forward (duration; bare number: seconds).",
    )
    reconcile_interval: Seconds = Field(
        default=900.0,
        ge=0,
        description="How often `serve` compares every linked customer's current period with "
        "Stripe (duration; bare number: seconds); the customers are spread over the interval. "
        "0 or `off` disables the background reconciler (`/reconcile` still works).",
    )
    reconcile_settle: Seconds = Field(
        default=300.0,
        ge=0,
        description="How long a difference with Stripe may follow a metric's newest delivery "
        "before it counts as drift (duration; bare number: seconds); until then, and while any "
        "of its forwards waits, the metric is settling.",
    )
    reconcile_max_rps: float = Field(
        default=5.0,
        gt=0,
        description="Most Stripe reads the background reconciler makes in any one second "
        "(reads/s; every replica together on PostgreSQL). They add to the forwarder's calls "
        "under Stripe's limits (25/s in test mode, 100/s live).",
    )
    auth_disabled: bool = Field(
        default=False,
        description="Serve every endpoint without credentials (boolean; local demos only: "
        "logged as a warning at every start).",
    )
    auth_cache_ttl: Seconds = Field(
        default=10.0,
        ge=0,
        description="How long a checked credential is remembered "
        "(duration; bare number: seconds); a revocation made "
        "by another process takes effect within this time, one made through the API at once.",
    )
    auth_last_used_interval: Seconds = Field(
        default=60.0,
        ge=0,
        description="Least time between two writes of one credential's last_used_at "
        "(duration; bare number: seconds).",
    )
    rate_limit_rps: float = Field(
        default=20.0, gt=0, description="Sustained requests per credential (requests/s)."
    )
    rate_limit_burst: int = Field(
        default=40, ge=1, description="Requests one credential may send at once (requests)."
    )
    body_read_timeout: Seconds = Field(
        default=30.0,
        gt=0,
        description="Longest time a client may take to send its request body "
        "(duration; bare number: seconds).",
    )
    ingest_lane: bool = Field(
        default=True,
        description="Take a valid report with an ingest token through the short ingest lane "
        "(boolean); false sends every request through the full handler. Answers are the same "
        "either way: this is for comparison, or to rule the lane out.",
    )
    header_read_timeout: Seconds = Field(
        default=10.0,
        gt=0,
        description="Longest time a new connection may take to send its request headers "
        "(duration; bare number: seconds); a slower one is closed.",
    )
    console_enabled: bool = Field(
        default=True, description="Serve the operator console at /console/ (boolean)."
    )
    console_session_secret: SecretStr | None = Field(
        default=None,
        description="Key that signs console sign-in cookies (text, at least 32 characters); "
        "give every replica the same one. Unset: a random key per process, so a sign-in holds "
        "on one replica until it restarts.",
    )
    console_session_lifetime: Seconds = Field(
        default=28800.0,
        gt=0,
        description="How long a console sign-in lasts (duration; bare number: seconds).",
    )
    console_refresh: Seconds = Field(
        default=30.0,
        ge=0,
        description="How often the console's overview and forwarding pages refresh their figures "
        "when JavaScript is on (duration; bare number: seconds); 0 turns live refresh off.",
    )
    console_silent_intervals: int = Field(
        default=3,
        ge=1,
        le=10_000,
        description="The console lists an agent instance as silent after this many of its own "
        "report intervals without a report (count).",
    )

    @model_validator(mode="after")
    def _renewal_inside_the_lease(self) -> CollectorSettings:
        if "stripe_lease_renewal" not in self.model_fields_set:
            self.stripe_lease_renewal = min(self.stripe_lease_renewal, self.stripe_lease / 3)
        if self.stripe_lease_renewal * 2 > self.stripe_lease:
            raise ValueError(
                "COLLECTOR_STRIPE_LEASE_RENEWAL must be at most half of COLLECTOR_STRIPE_LEASE, "
                "or one late renewal lets the claim lapse while its call is in flight"
            )
        return self

    @field_validator("reconcile_interval", mode="before")
    @classmethod
    def _interval_off(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("off", "false", "disabled"):
            return 0.0
        return value

    @field_validator("console_session_secret")
    @classmethod
    def _long_session_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_SESSION_SECRET:
            raise ValueError(
                f"must be at least {MIN_SESSION_SECRET} characters, e.g. from "
                "`openssl rand -hex 32`"
            )
        return value

    @field_validator("legacy_window")
    @classmethod
    def _positive_window(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("COLLECTOR_LEGACY_WINDOW must be a positive duration, e.g. 1h")
        return value

    @field_validator("extra_metrics")
    @classmethod
    def _check_extra_metrics(cls, value: str) -> str:
        if value.strip():
            try:
                parse_definitions(value)
            except SchemaError as exc:
                raise ValueError(_first_problem(exc)) from exc
        return value

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        level = value.strip().lower()
        if level not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)} (got {value!r})")
        return level

    @field_validator("database_url")
    @classmethod
    def _supported_database_url(cls, value: SecretStr) -> SecretStr:
        problem = database_url_problem(value.get_secret_value())
        if problem is not None:
            raise ValueError(problem)
        return value

    def catalogue(self) -> MetricCatalogue:
        return MetricCatalogue.from_config(self.extra_metrics)

    def async_database_url(self) -> str:
        """The database URL with its async driver."""
        return with_async_driver(self.database_url.get_secret_value().strip())

    @property
    def call_slot_lease(self) -> float:
        """Seconds a shared rate-limit slot stays taken if its holder dies: beyond any call."""
        return self.stripe_timeout + self.stripe_lease

    @property
    def is_sqlite(self) -> bool:
        return self.async_database_url().startswith("sqlite")


def load_settings(secrets_dir: Path | None = None, **overrides: object) -> CollectorSettings:
    """Build the settings once: environment, then files in ``secrets_dir``, then ``overrides``."""
    kwargs: dict[str, Any] = dict(overrides)
    if secrets_dir is not None and secrets_dir.is_dir():
        kwargs["_secrets_dir"] = secrets_dir
    return CollectorSettings(**kwargs)
