"""Coverage per window (issue 11, defect 5): a window with no samples is not a measured 0.

Over real HTTP on SQLite and PostgreSQL: ``unmeasured`` and ``coverage`` are stored and shown,
and ``/totals`` flags a period with windows that were not measured in full.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx

from tests.integration.collector.test_ingest import LEGACY_BODY, make_report, post
from tests.support.collector import RunningCollector

COVERAGE = {
    "devices": {"samples": 1, "expected": 1, "series": 1, "method": "api"},
    "mqtt_messages": {"samples": 0, "expected": 240, "series": 0, "method": "raw"},
    "storage_gb": {"samples": 238, "expected": 240, "series": 2, "method": "grid"},
}


def unmeasured_report(hours_ago: int = 1, **changes: object) -> Any:
    """Prometheus answered, but held no mqtt_messages sample in the window."""
    fields: dict[str, Any] = {
        "metrics": {"devices": 7, "storage_gb": 1.5},
        "unmeasured": ["mqtt_messages"],
        "coverage": COVERAGE,
        **changes,
    }
    return make_report(hours_ago, **fields)


def totals(collector: RunningCollector, since: datetime, until: datetime) -> dict[str, Any]:
    response = httpx.get(
        f"{collector.url}/api/usage/cust_1/totals",
        headers=collector.operator_headers("viewer"),
        params={"since": since.isoformat(), "until": until.isoformat()},
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def by_name(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in body["totals"]}


def test_windows_with_no_samples_are_stored_as_not_measured(
    collector: RunningCollector,
) -> None:
    report = unmeasured_report()
    created = post(collector, report.to_json())
    assert created.status_code == 201
    stored = created.json()["report"]
    viewer = collector.operator_headers("viewer")
    history = httpx.get(f"{collector.url}/api/usage/cust_1", headers=viewer).json()["reports"]
    latest = httpx.get(f"{collector.url}/api/usage/cust_1/latest", headers=viewer).json()
    for shown in (stored, history[0], latest):
        assert shown["unmeasured"] == ["mqtt_messages"]
        assert "mqtt_messages" not in shown["metrics"]
        assert shown["coverage"] == COVERAGE
        assert shown["partial"] is False
        assert shown["complete"] is False


def test_a_report_without_coverage_reads_back_complete(collector: RunningCollector) -> None:
    for body in (make_report().to_json(), LEGACY_BODY):
        shown = post(collector, body).json()["report"]
        assert (shown["unmeasured"], shown["coverage"], shown["complete"]) == ([], {}, True)


def test_a_partial_report_is_not_complete(collector: RunningCollector) -> None:
    report = make_report(metrics={"devices": 7}, missing=["mqtt_messages", "storage_gb"])
    shown = post(collector, report.to_json()).json()["report"]
    assert (shown["partial"], shown["complete"]) == (True, False)


def test_totals_flag_a_period_with_unmeasured_and_missing_windows(
    collector: RunningCollector,
) -> None:
    complete = [make_report(hours_ago) for hours_ago in (5, 4)]
    unmeasured = unmeasured_report(3)
    partial = make_report(2, metrics={"devices": 7, "mqtt_messages": 10}, missing=["storage_gb"])
    for report in (*complete, unmeasured, partial):
        assert post(collector, report.to_json()).status_code == 201

    whole = totals(collector, complete[0].window_start, partial.window_end)
    assert (whole["complete"], whole["incomplete_windows"]) == (False, 2)
    rows = by_name(whole)
    assert {name: row["incomplete_windows"] for name, row in rows.items()} == {
        "devices": 0,
        "mqtt_messages": 1,
        "storage_gb": 1,
    }
    assert rows["mqtt_messages"]["reports"] == 3
    assert Decimal(str(rows["mqtt_messages"]["value"])) == 2 * 1234 + 10

    measured = totals(collector, complete[0].window_start, complete[1].window_end)
    assert (measured["complete"], measured["incomplete_windows"]) == (True, 0)
    assert all(row["incomplete_windows"] == 0 for row in measured["totals"])


def test_a_metric_measured_in_no_window_has_no_total_rather_than_zero(
    collector: RunningCollector,
) -> None:
    report = unmeasured_report()
    post(collector, report.to_json())
    body = totals(collector, report.window_start, report.window_end)
    assert "mqtt_messages" not in by_name(body)
    assert (body["complete"], body["incomplete_windows"]) == (False, 1)


def test_a_retry_with_other_coverage_is_a_duplicate_not_a_conflict(
    collector: RunningCollector,
) -> None:
    first = unmeasured_report()
    retry = unmeasured_report(coverage={"storage_gb": {"samples": 240, "expected": 240}})
    assert post(collector, first.to_json()).status_code == 201
    again = post(collector, retry.to_json())
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert again.json()["report"]["coverage"] == COVERAGE


def test_incomplete_reports_are_counted_by_reason(collector: RunningCollector) -> None:
    report = unmeasured_report(missing=["storage_gb"], metrics={"devices": 7})
    post(collector, report.to_json())
    post(collector, report.to_json())
    post(collector, make_report(2).to_json())
    metrics = httpx.get(f"{collector.url}/metrics").text
    assert 'usage_collector_incomplete_reports_total{reason="unmeasured"} 1.0' in metrics
    assert 'usage_collector_incomplete_reports_total{reason="missing"} 1.0' in metrics


def test_a_metric_both_missing_and_unmeasured_counts_once(collector: RunningCollector) -> None:
    measured = make_report(2)
    both = unmeasured_report(1, missing=["mqtt_messages"])
    for report in (measured, both):
        assert post(collector, report.to_json()).status_code == 201
    body = totals(collector, measured.window_start, both.window_end)
    assert body["incomplete_windows"] == 1
    assert by_name(body)["mqtt_messages"]["incomplete_windows"] == 1
