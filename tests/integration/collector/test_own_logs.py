"""The collector says what it did: stored reports and refused requests are logged (issue 12, 5).

Through the real app on loopback; refusals are logged with the path and why, and never with
the secret that was presented.
"""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
from structlog.testing import capture_logs

from tests.integration.collector.test_ingest import make_report
from tests.support.collector import RunningCollector
from tests.support.credentials import bearer, issue_key, issue_token


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


def post_report(collector: RunningCollector, body: str, headers: dict[str, str]) -> int:
    response = httpx.post(
        f"{collector.url}/api/usage/report",
        content=body,
        headers={"content-type": "application/json", **headers},
    )
    return response.status_code


def test_a_stored_report_is_logged_and_its_repeat_only_at_debug(
    collector: RunningCollector,
) -> None:
    report = make_report()
    headers = collector.ingest_headers("cust_1")
    with capture_logs() as logs:
        assert post_report(collector, report.to_json(), headers) == 201
        assert post_report(collector, report.to_json(), headers) == 200

    created, repeated = events(logs, "report_stored")
    assert created["log_level"] == "info"
    assert created["result"] == "created"
    assert (created["customer_id"], created["instance_id"]) == ("cust_1", "cluster-a")
    assert created["report_id"] == str(report.id)
    assert created["window_start"] == report.window_start.isoformat()
    assert created["window_end"] == report.window_end.isoformat()
    assert sorted(created["metrics"]) == ["devices", "mqtt_messages", "storage_gb"]
    assert (repeated["log_level"], repeated["result"]) == ("debug", "duplicate")


def test_401_and_403_are_logged_as_auth_refused_without_the_secret(
    collector: RunningCollector,
) -> None:
    url = collector.url
    unknown = "umt_" + "A" * 43
    token = issue_token(collector.database_url, "cust_a")
    limited = issue_key(collector.database_url, "viewer", "cust_a")
    with capture_logs() as logs:
        assert httpx.get(f"{url}/api/forwarding/status").status_code == 401
        assert httpx.get(f"{url}/api/forwarding/status", headers=bearer(unknown)).status_code == 401
        assert (
            httpx.get(f"{url}/api/forwarding/status", headers=bearer(token.secret)).status_code
            == 403
        )
        body = make_report(customer_id="cust_b").to_json()
        assert post_report(collector, body, bearer(token.secret)) == 403
        assert (
            httpx.get(f"{url}/api/usage/cust_b?limit=1", headers=bearer(limited.secret)).status_code
            == 403
        )

    refused = events(logs, "auth_refused")
    assert [(e["status"], e["method"], e["path"]) for e in refused] == [
        (401, "GET", "/api/forwarding/status"),
        (401, "GET", "/api/forwarding/status"),
        (403, "GET", "/api/forwarding/status"),
        (403, "POST", "/api/usage/report"),
        (403, "GET", "/api/usage/cust_b"),
    ]
    assert all(e["log_level"] == "warning" and e["reason"] for e in refused)
    missing, unknown_token, wrong_role, other_customer, limited_key = refused
    assert missing["credential"] == "none"
    assert unknown_token["credential"] == "ingest_token"
    digest = hashlib.sha256(unknown.encode()).hexdigest()
    assert unknown_token["secret_sha256_prefix"] == digest[:12]
    for entry in (wrong_role, other_customer):
        assert (entry["credential_id"], entry["customer_id"]) == (token.credential.id, "cust_a")
    assert "cust_b" in other_customer["reason"]
    assert wrong_role["credential"] == "ingest_token"
    assert (limited_key["credential_id"], limited_key["credential"]) == (
        limited.credential.id,
        "operator_key",
    )
    text = repr(logs)
    for secret in (unknown, token.secret, limited.secret):
        assert secret not in text
