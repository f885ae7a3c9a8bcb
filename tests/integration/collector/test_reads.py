"""History, latest, totals, health, metrics and OpenAPI over real HTTP."""

from __future__ import annotations

import httpx

from tests.integration.collector.test_ingest import make_report, post
from tests.support.collector import RunningCollector


def test_history_is_newest_first_and_pages_with_a_cursor(collector: RunningCollector) -> None:
    for hours_ago in range(1, 6):
        assert post(collector, make_report(hours_ago).to_json()).status_code == 201
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = httpx.get(
            f"{collector.url}/api/usage/cust_1",
            headers=collector.operator_headers("viewer"),
            params=params,
        ).json()
        seen.extend(r["window_end"] for r in page["reports"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 5
    assert seen == sorted(seen, reverse=True)


def test_history_filters_by_since_and_until(collector: RunningCollector) -> None:
    reports = [make_report(h) for h in range(1, 5)]
    for report in reports:
        post(collector, report.to_json())
    since = reports[3].window_end.isoformat()
    until = reports[1].window_end.isoformat()
    page = httpx.get(
        f"{collector.url}/api/usage/cust_1",
        headers=collector.operator_headers("viewer"),
        params={"since": since, "until": until},
    ).json()
    ends = [r["window_end"] for r in page["reports"]]
    assert len(ends) == 2
    assert ends[0].startswith(reports[1].window_end.strftime("%Y-%m-%dT%H"))


def test_history_of_other_customer_is_separate(collector: RunningCollector) -> None:
    post(collector, make_report().to_json())
    post(collector, make_report(customer_id="cust_2").to_json())
    page = httpx.get(
        f"{collector.url}/api/usage/cust_2", headers=collector.operator_headers("viewer")
    ).json()
    assert [r["customer_id"] for r in page["reports"]] == ["cust_2"]


def test_latest_returns_newest_window_or_404(collector: RunningCollector) -> None:
    assert (
        httpx.get(
            f"{collector.url}/api/usage/cust_1/latest", headers=collector.operator_headers("viewer")
        ).status_code
        == 404
    )
    post(collector, make_report(3).to_json())
    newest = make_report(1)
    post(collector, newest.to_json())
    post(collector, make_report(2).to_json())
    latest = httpx.get(
        f"{collector.url}/api/usage/cust_1/latest", headers=collector.operator_headers("viewer")
    ).json()
    assert latest["report_id"] == str(newest.id)


def test_bad_cursor_is_a_validation_error(collector: RunningCollector) -> None:
    response = httpx.get(
        f"{collector.url}/api/usage/cust_1",
        headers=collector.operator_headers("viewer"),
        params={"cursor": "@@@"},
    )
    assert response.status_code == 422
    assert response.json()["field"] == "cursor"


def test_ready_checks_the_database_and_metrics_are_served(collector: RunningCollector) -> None:
    assert httpx.get(f"{collector.url}/health/live").json()["status"] == "ok"
    ready = httpx.get(f"{collector.url}/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"] == "ok"
    post(collector, make_report().to_json())
    metrics = httpx.get(f"{collector.url}/metrics").text
    assert 'usage_collector_reports_total{result="created"} 1.0' in metrics


def test_openapi_documents_the_report_body(collector: RunningCollector) -> None:
    schema = httpx.get(f"{collector.url}/schema/openapi.json").json()
    operation = schema["paths"]["/api/usage/report"]["post"]
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/UsageReportBody")
    assert {"UsageReport", "LegacyUsageReport"} <= schema["components"]["schemas"].keys()
