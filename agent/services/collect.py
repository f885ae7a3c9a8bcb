"""Builds one usage report for a window from every configured provider.

A provider that fails leaves its metrics out of the report and lists them in ``missing`` (which
marks the report partial). A metric is never filled with a zero nobody measured.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from agent.services.sources import Measurement, MetricProvider
from common.schema import MetricCoverage, UsageReport, check_metric_value
from common.windows import Window

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class CollectedReport:
    """A window's report and the state changes to persist once it is safely delivered."""

    report: UsageReport
    commits: tuple[Callable[[], None], ...] = ()
    errors: tuple[str, ...] = ()  # why each failed source failed, for ``run --once`` to print
    awaiting_history: tuple[str, ...] = ()
    """Missing metrics whose source keeps history: measurable exactly once it answers again."""

    def commit(self) -> None:
        for commit in self.commits:
            commit()


class ReportCollector:
    """Runs every provider for a window, concurrently, and assembles the v1 report."""

    def __init__(
        self,
        *,
        customer_id: str,
        instance_id: str,
        providers: Sequence[MetricProvider],
        agent_version: str,
        on_source_error: Callable[[str], None] | None = None,
    ) -> None:
        self._on_source_error = on_source_error
        self._customer_id = customer_id
        self._instance_id = instance_id
        self._providers = tuple(providers)
        self._agent_version = agent_version

    @property
    def metrics(self) -> tuple[str, ...]:
        """Every metric some provider is configured to measure."""
        return tuple(m for p in self._providers for m in p.metrics)

    async def _measure(
        self, provider: MetricProvider, window: Window, errors: list[str]
    ) -> Measurement:
        try:
            return await provider.measure(window)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # One broken source must not stop the others from being billed; it is logged and
            # its metrics are reported missing.
            if self._on_source_error is not None:
                self._on_source_error(str(getattr(exc, "source", type(exc).__name__)))
            errors.append(str(exc) or type(exc).__name__)
            log.warning(
                "source_failed",
                metrics=list(provider.metrics),
                window=str(window),
                error=str(exc),
                error_type=type(exc).__name__,
                exc_info=not getattr(exc, "retryable", False),
            )
            return Measurement(missing=provider.metrics)

    async def collect(self, window: Window) -> CollectedReport:
        """Measure the window with every provider and build its report."""
        errors: list[str] = []
        measurements = await asyncio.gather(
            *(self._measure(p, window, errors) for p in self._providers)
        )
        awaiting = tuple(
            m
            for provider, measurement in zip(self._providers, measurements, strict=True)
            if provider.keeps_history
            for m in measurement.missing
        )
        metrics: dict[str, int | float] = {}
        missing: list[str] = []
        unmeasured: list[str] = []
        coverage: dict[str, MetricCoverage] = {}
        active = total = None
        commits = []
        for measurement in measurements:
            for name, value in measurement.metrics.items():
                try:
                    metrics[name] = check_metric_value(name, value)
                except ValueError as exc:
                    log.error("metric_not_reportable", metric=name, error=str(exc))
                    missing.append(name)
            missing.extend(m for m in measurement.missing if m not in missing)
            unmeasured.extend(m for m in measurement.unmeasured if m not in unmeasured)
            coverage.update(measurement.coverage)
            if measurement.active_devices is not None:
                active = measurement.active_devices
            if measurement.total_devices is not None:
                total = measurement.total_devices
            if measurement.commit is not None:
                commits.append(measurement.commit)
        report = UsageReport(
            customer_id=self._customer_id,
            instance_id=self._instance_id,
            window_start=window.start,
            window_end=window.end,
            metrics=metrics,
            active_devices=active,
            total_devices=total,
            partial=bool(missing),
            missing=missing,
            unmeasured=unmeasured,
            coverage=coverage,
            agent_version=self._agent_version,
        )
        log.info(
            "report_collected",
            report_id=str(report.id),
            window=str(window),
            metrics=metrics,
            missing=missing,
            unmeasured=unmeasured,
        )
        if unmeasured:
            log.warning("metrics_unmeasured", window=str(window), metrics=unmeasured)
        return CollectedReport(report, tuple(commits), tuple(errors), awaiting)
