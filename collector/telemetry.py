"""The collector's own Prometheus metrics, on a registry injected at start-up."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class CollectorMetrics:
    """Counters and histograms the services update and ``GET /metrics`` exposes."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.reports = Counter(
            "usage_collector_reports_total",
            "Usage reports received, by result (created, duplicate, conflict, rejected).",
            ["result"],
            registry=registry,
        )
        self.ingest_seconds = Histogram(
            "usage_collector_ingest_duration_seconds",
            "Time to validate and store one usage report, in seconds.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=registry,
        )
        self.metric_values = Counter(
            "usage_collector_metric_values_total",
            "Metric values stored in new reports, by metric name.",
            ["metric"],
            registry=registry,
        )
        self.incomplete_reports = Counter(
            "usage_collector_incomplete_reports_total",
            "New reports not measured in full, by reason: missing (a source failed, the report "
            "is partial) or unmeasured (a source answered without a sample in the window). A "
            "report with both counts under each.",
            ["reason"],
            registry=registry,
        )
        for reason in ("missing", "unmeasured"):
            self.incomplete_reports.labels(reason)  # exported as 0 before the first one
        self.http_errors = Counter(
            "usage_collector_http_errors_total",
            "Requests answered with an error, by HTTP status and error code.",
            ["status", "code"],
            registry=registry,
        )
        self.stripe_calls = Counter(
            "usage_collector_stripe_calls_total",
            "Calls to Stripe by forwarding mode and outcome (ok, duplicate, retry, rejected).",
            ["mode", "outcome"],
            registry=registry,
        )
        self.forwarded = Counter(
            "usage_collector_forwards_acknowledged_total",
            "Report metrics whose usage Stripe acknowledged, by metric.",
            ["metric"],
            registry=registry,
        )
        self.coalesced = Counter(
            "usage_collector_stripe_calls_saved_total",
            "Stripe calls saved by coalescing waiting forwards or skipping unchanged values.",
            ["metric"],
            registry=registry,
        )
        # Not ``usage_collector_dead_letters_total``: that family name belongs to the gauge of
        # open dead letters below, and a counter and a gauge cannot share one.
        self.dead_lettered = Counter(
            "usage_collector_batches_dead_lettered_total",
            "Batches parked as dead for an operator (Stripe refused them, or they aged past "
            "Stripe's 35 days), by metric.",
            ["metric"],
            registry=registry,
        )
        self.forward_lag = Histogram(
            "usage_collector_forward_lag_seconds",
            "Seconds from a batch being formed to Stripe acknowledging it; observed on "
            "acknowledgement only, so usage that never reaches Stripe is not in it: alert on "
            "usage_collector_oldest_unbilled_seconds instead.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600),
            registry=registry,
        )
        self.pending_forwards = Gauge(
            "usage_collector_pending_forwards",
            "Report metrics Stripe has not acknowledged yet, by state: pending (not in a batch "
            "yet, e.g. the customer is not linked) or batched (in an open batch: being sent, or "
            "retried after a failure). Dead letters are not counted here.",
            ["state"],
            registry=registry,
        )
        for state in ("pending", "batched"):
            self.pending_forwards.labels(state)
        self.oldest_unbilled_seconds = Gauge(
            "usage_collector_oldest_unbilled_seconds",
            "Seconds since the window end of the oldest stored usage Stripe has not acknowledged "
            "(pending or batched; dead letters are counted by usage_collector_dead_letters); 0 "
            "with none.",
            registry=registry,
        )
        self.open_dead_letters = Gauge(
            "usage_collector_dead_letters",
            "Open dead-lettered batches: usage parked for an operator "
            "(GET /api/forwarding/batches?state=dead).",
            registry=registry,
        )
        self.customers_unbilled = Gauge(
            "usage_collector_customers_unbilled",
            "Customers with usage Stripe has not acknowledged, by reason: unlinked (no Stripe "
            "customer linked), waiting (linked, not sent or acknowledged yet) or dead (an open "
            "dead letter). A customer can count under more than one reason.",
            ["reason"],
            registry=registry,
        )
        for reason in ("unlinked", "waiting", "dead"):
            self.customers_unbilled.labels(reason)
        self.ageing_forwards = Gauge(
            "usage_collector_ageing_forwards",
            "Waiting windows within COLLECTOR_STRIPE_AGE_WARNING_DAYS of Stripe's 35-day limit "
            "on event timestamps, or past it.",
            registry=registry,
        )
        self.ageing_expires_seconds = Gauge(
            "usage_collector_ageing_expires_seconds",
            "Seconds until the oldest waiting window reaches Stripe's 35-day limit (negative: "
            "past it; 0 with none ageing).",
            registry=registry,
        )
        self.webhooks = Counter(
            "usage_collector_stripe_webhooks_total",
            "Stripe webhook deliveries by event type and result (processed, duplicate).",
            ["type", "result"],
            registry=registry,
        )
        self.customers_in_sync = Gauge(
            "usage_collector_customers_in_sync",
            "Linked customers whose latest background reconcile of the current period matched "
            "Stripe exactly for every metric.",
            registry=registry,
        )
        self.customers_drifting = Gauge(
            "usage_collector_customers_drifting",
            "Linked customers whose latest background reconcile differs from Stripe for a metric "
            "with no forward of it waiting and its newest delivery older than "
            "COLLECTOR_RECONCILE_SETTLE.",
            registry=registry,
        )
        self.customers_settling = Gauge(
            "usage_collector_customers_settling",
            "Linked customers apart from Stripe only while usage is on its way or within "
            "COLLECTOR_RECONCILE_SETTLE of its delivery.",
            registry=registry,
        )
        self.reconcile_max_drift = Gauge(
            "usage_collector_reconcile_max_drift",
            "Largest absolute difference between the collector's billable quantity and "
            "Stripe's, in billable units, among drifting customers, by metric (0: none drifts).",
            ["metric"],
            registry=registry,
        )
        self.reconcile_checks = Counter(
            "usage_collector_reconcile_checks_total",
            "Customers reconciled by the background reconciler, by result (ok, failed).",
            ["result"],
            registry=registry,
        )
        for result in ("ok", "failed"):
            self.reconcile_checks.labels(result)
        self.reconcile_rounds = Counter(
            "usage_collector_reconcile_rounds_total",
            "Rounds of the background reconciler over every linked customer, completed.",
            registry=registry,
        )
        self.leader = Gauge(
            "usage_collector_leader",
            "1 while this replica leads and runs the tasks that must run once (reconciler, "
            "ageing warnings, subscription reads); 0 otherwise.",
            registry=registry,
        )
        self.leadership_changes = Counter(
            "usage_collector_leadership_changes_total",
            "Times this replica became the leader (acquired) or stopped being it (lost).",
            ["event"],
            registry=registry,
        )
        for event in ("acquired", "lost"):
            self.leadership_changes.labels(event)
        self.leases_lost = Counter(
            "usage_collector_batch_leases_lost_total",
            "Batches this replica gave up because it could not keep their lease (the database "
            "unreachable, or another replica took them); another replica resends them under "
            "the same identifier.",
            registry=registry,
        )
