"""The agent's self-metrics (prometheus-client, on an injected registry) and its health rule."""

from __future__ import annotations

from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, Counter, Gauge

from common.clock import Clock

HEALTHY_INTERVALS = 3


class AgentMetrics:
    """Every metric the agent exports; tests read them back from the same registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.last_collection = Gauge(
            "usage_agent_last_collection_timestamp_seconds",
            "When a window's report was last collected and spooled (unix seconds).",
            registry=registry,
        )
        self.last_send = Gauge(
            "usage_agent_last_send_timestamp_seconds",
            "When the collector last accepted a report, 201 or duplicate 200 (unix seconds).",
            registry=registry,
        )
        self.spool_depth = Gauge(
            "usage_agent_spool_reports",
            "Reports waiting in the spool (reports).",
            registry=registry,
        )
        self.dead_reports = Gauge(
            "usage_agent_spool_dead_reports",
            "Reports the collector refused for good, kept in the state file (reports).",
            registry=registry,
        )
        self.oldest_unsent_age = Gauge(
            "usage_agent_oldest_unsent_window_age_seconds",
            "Age of the end of the oldest window still waiting in the spool (seconds).",
            registry=registry,
        )
        self.compactions = Counter(
            "usage_agent_spool_compactions_total",
            "Times the oldest waiting reports were folded into one (compactions).",
            registry=registry,
        )
        self.spool_overflow = Counter(
            "usage_agent_spool_overflow_total",
            "Reports spooled beyond AGENT_SPOOL_MAX_REPORTS because nothing could be compacted.",
            registry=registry,
        )
        self.windows_unmeasured = Counter(
            "usage_agent_windows_unmeasured_total",
            "Windows spooled with a metric that had no sample, by metric (windows).",
            ["metric"],
            registry=registry,
        )
        self.source_errors = Counter(
            "usage_agent_source_errors_total",
            "Failed source reads, by source (errors).",
            ["source"],
            registry=registry,
        )
        self.send_failures = Counter(
            "usage_agent_send_failures_total",
            "Failed sends to the collector, by HTTP status or 'network' (failures).",
            ["status"],
            registry=registry,
        )
        self.reports_sent = Counter(
            "usage_agent_reports_sent_total",
            "Reports the collector answered for good, by result (reports).",
            ["result"],
            registry=registry,
        )
        self.windows_deferred = Counter(
            "usage_agent_windows_deferred_total",
            "Window collections postponed because a source failed (windows).",
            registry=registry,
        )
        self.windows_skipped = Counter(
            "usage_agent_windows_skipped_total",
            "Windows older than AGENT_MAX_CATCHUP that were never collected (windows).",
            registry=registry,
        )
        self.is_leader = Gauge(
            "usage_agent_is_leader",
            "1 when this agent may collect and send (the Lease holder, or no election).",
            registry=registry,
        )


class Health:
    """``/healthz``: unhealthy when reporting is on, this agent leads and nothing was sent for
    three intervals (counted from start-up before the first send)."""

    def __init__(self, clock: Clock, interval: timedelta, *, enabled: bool = True) -> None:
        self._clock = clock
        self._interval = interval
        self._enabled = enabled
        self._since = clock.now()
        self.leader = True

    def sent(self, at: datetime) -> None:
        self._since = max(self._since, at)

    def check(self) -> tuple[bool, str]:
        if not self._enabled:
            return True, "reporting disabled"
        if not self.leader:
            return True, "follower: the Lease holder reports"
        quiet = self._clock.now() - self._since
        if quiet > HEALTHY_INTERVALS * self._interval:
            return False, f"nothing sent for {int(quiet.total_seconds())}s"
        return True, "ok"
