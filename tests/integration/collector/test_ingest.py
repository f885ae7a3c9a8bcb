"""Ingest over real HTTP, on SQLite and on PostgreSQL: stored once, never counted twice."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx

from common.schema import UsageReport, derive_report_id
from tests.support.collector import RunningCollector, count_rows

LEGACY_BODY = {
    "customer_id": "cust_abc123",
    "instance_id": "k8s-cluster-1",
    "active_devices": 3,
    "total_devices": 5,
    "metrics": {"devices": 3, "mqtt_messages": 15000, "storage_gb": 2.5, "api_requests": 50000},
}


# One anchor for the whole run: a test whose reports straddle the top of an hour would
# otherwise get the same window twice, and its second report would pass for a resend.
THIS_HOUR = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def hour_window(hours_ago: int) -> tuple[datetime, datetime]:
    end = THIS_HOUR - timedelta(hours=hours_ago)
    return end - timedelta(hours=1), end


def make_report(hours_ago: int = 1, **changes: object) -> UsageReport:
    start, end = hour_window(hours_ago)
    fields: dict[str, object] = {
        "customer_id": "cust_1",
        "instance_id": "cluster-a",
        "window_start": start,
        "window_end": end,
        "metrics": {"devices": 7, "mqtt_messages": 1234, "storage_gb": 1.5},
        "active_devices": 7,
        "total_devices": 9,
        "agent_version": "test",
    }
    fields.update(changes)
    return UsageReport.model_validate(fields)


def customer_of(body: str | dict) -> str:
    """The report's customer, whose ingest token sends it (cust_1 for a body that is not one)."""
    try:
        parsed = json.loads(body) if isinstance(body, str) else body
    except ValueError:
        return "cust_1"
    customer = parsed.get("customer_id") if isinstance(parsed, dict) else None
    return customer if isinstance(customer, str) and customer else "cust_1"


def post(collector: RunningCollector, body: str | dict, **headers: str) -> httpx.Response:
    """Send a report with an ingest token of its own customer."""
    content = body if isinstance(body, str) else None
    return httpx.post(
        f"{collector.url}/api/usage/report",
        content=content,
        json=None if content is not None else body,
        headers={
            "content-type": "application/json",
            **collector.ingest_headers(customer_of(body)),
            **headers,
        },
    )


def test_new_report_is_created_and_returned(collector: RunningCollector) -> None:
    report = make_report()
    response = post(collector, report.to_json())
    assert response.status_code == 201
    body = response.json()
    assert body["message"] == "Usage reported successfully"
    assert body["stripe_reported"] is False
    stored = body["report"]
    assert stored["report_id"] == str(report.id)
    assert stored["customer_id"] == "cust_1"
    assert stored["metrics"] == {"devices": 7, "mqtt_messages": 1234, "storage_gb": 1.5}
    assert {"id", "created_at"} <= stored.keys()


def test_repeated_report_id_is_stored_once_and_answers_200(collector: RunningCollector) -> None:
    report = make_report()
    first = post(collector, report.to_json())
    second = post(collector, report.to_json())
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["report"]["id"] == first.json()["report"]["id"]
    assert second.json()["duplicate"] is True
    assert count_rows(collector.settings.database_url.get_secret_value()) == 1


def test_report_without_id_gets_the_deterministic_id(collector: RunningCollector) -> None:
    report = make_report()
    body = report.model_dump(mode="json")
    del body["report_id"]
    response = post(collector, body)
    assert response.status_code == 201
    expected = derive_report_id("cust_1", "cluster-a", report.window_start, report.window_end)
    assert response.json()["report"]["report_id"] == str(expected)
    assert post(collector, report.to_json()).status_code == 200


def test_same_id_with_other_content_is_a_conflict_and_changes_nothing(
    collector: RunningCollector,
) -> None:
    report = make_report()
    assert post(collector, report.to_json()).status_code == 201
    changed = report.model_copy(update={"metrics": {"devices": 8}})
    response = post(collector, changed.to_json())
    assert response.status_code == 409
    assert response.json()["error"] == "conflict"
    latest = httpx.get(
        f"{collector.url}/api/usage/cust_1/latest", headers=collector.operator_headers("viewer")
    ).json()
    assert latest["metrics"]["devices"] == 7


def test_seed_legacy_body_is_accepted(collector: RunningCollector) -> None:
    response = post(collector, LEGACY_BODY)
    assert response.status_code == 201
    body = response.json()
    assert body["message"] == "Usage reported successfully"
    assert isinstance(body["stripe_reported"], bool)
    assert body["report"]["customer_id"] == "cust_abc123"
    assert body["report"]["legacy"] is True
    assert body["report"]["metrics"]["storage_gb"] == 2.5


def test_legacy_body_with_idempotency_key_is_deduplicated(collector: RunningCollector) -> None:
    first = post(collector, LEGACY_BODY, **{"idempotency-key": "export-42"})
    second = post(collector, LEGACY_BODY, **{"idempotency-key": "export-42"})
    assert (first.status_code, second.status_code) == (201, 200)
    assert count_rows(collector.settings.database_url.get_secret_value()) == 1


def test_rejected_reports_store_nothing(collector: RunningCollector) -> None:
    url = collector.settings.database_url.get_secret_value()
    start, end = hour_window(1)
    bad = [
        ("not json", {}, 400),
        (make_report().to_json(), {"content-type": "text/plain"}, 415),
        ({**LEGACY_BODY, "metrics": {"bogus": 1}}, {}, 422),
        ({**LEGACY_BODY, "metrics": {"devices": -1}}, {}, 422),
        (
            {
                "schema_version": 1,
                "customer_id": "c",
                "instance_id": "i",
                "window_start": end.isoformat(),
                "window_end": start.isoformat(),
            },
            {},
            422,
        ),
    ]
    for body, headers, status in bad:
        response = post(collector, body, **headers)
        assert response.status_code == status, response.text
        assert set(response.json()) == {"error", "detail", "field"}
    assert count_rows(url) == 0


def test_unknown_metric_error_names_the_allowed_ones(collector: RunningCollector) -> None:
    response = post(collector, {**LEGACY_BODY, "metrics": {"bogus": 1}})
    detail = response.json()["detail"]
    assert response.json()["field"] == "metrics.bogus"
    for name in ("devices", "mqtt_messages", "storage_gb", "api_requests"):
        assert name in detail
