"""Bodies of absurd shape get a 4xx on every endpoint, never a 500 (issue 10, items 5 to 7)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
import stripe

from collector.adapters.db.tables import CredentialRow, ReportRow
from tests.integration.collector.test_ingest import make_report
from tests.support.collector import RunningCollector, count_rows, run_collector

DEEP = "[" * 10_000 + "]" * 10_000
SECRET = "whsec_body_limits"


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error", "detail", "field"}
    assert response.json()["error"] == code


@pytest.fixture
def limited(database_url: str) -> Iterator[RunningCollector]:
    with run_collector(database_url, stripe_webhook_secret=SECRET) as running:
        yield running


def endpoints(collector: RunningCollector) -> dict[str, dict[str, str]]:
    return {
        "/api/usage/report": collector.ingest_headers("cust_a"),
        "/api/admin/tokens": collector.operator_headers("admin"),
        "/api/forwarding/customers/cust_a/link": collector.operator_headers("editor"),
    }


def test_json_nested_ten_thousand_levels_deep_is_refused_everywhere(
    limited: RunningCollector,
) -> None:
    for path, headers in endpoints(limited).items():
        answer = httpx.post(
            f"{limited.url}{path}",
            content=DEEP,
            headers={"content-type": "application/json", **headers},
        )
        assert_error(answer, 400, "bad_request")
        assert "nested" in answer.json()["detail"]
    body = b'{"id": "evt_1", "type": "x", "data": ' + DEEP.encode() + b"}"
    webhook = httpx.post(
        f"{limited.url}/api/stripe/webhook",
        content=body,
        headers={"content-type": "application/json", "stripe-signature": signed_bytes(body)},
    )
    assert_error(webhook, 400, "bad_request")
    assert count_rows(limited.database_url, ReportRow) == 0


def signed_bytes(body: bytes) -> str:
    stamp = int(time.time())
    signature = stripe.WebhookSignature._compute_signature(f"{stamp}.{body.decode()}", SECRET)
    return f"t={stamp},v1={signature}"


def test_numbers_of_thousands_of_digits_and_huge_counts_are_refused(
    limited: RunningCollector,
) -> None:
    headers = {"content-type": "application/json", **limited.ingest_headers("cust_a")}
    body = json.loads(make_report(customer_id="cust_a").to_json())
    body["metrics"]["mqtt_messages"] = "__N__"
    huge = json.dumps(body).replace('"__N__"', "9" * 5000)
    answer = httpx.post(f"{limited.url}/api/usage/report", content=huge, headers=headers)
    assert_error(answer, 400, "bad_request")
    for field, value in (("active_devices", 10**30), ("total_devices", 2**63)):
        body = json.loads(make_report(customer_id="cust_a").to_json())
        body[field] = value
        answer = httpx.post(
            f"{limited.url}/api/usage/report", content=json.dumps(body), headers=headers
        )
        assert_error(answer, 422, "validation_error")
    legacy = {"customer_id": "cust_a", "instance_id": "x", "active_devices": 2**70, "metrics": {}}
    answer = httpx.post(
        f"{limited.url}/api/usage/report", content=json.dumps(legacy), headers=headers
    )
    assert_error(answer, 422, "validation_error")
    assert count_rows(limited.database_url, ReportRow) == 0


def test_operator_endpoints_refuse_text_plain(limited: RunningCollector) -> None:
    admin = limited.operator_headers("admin")
    before = count_rows(limited.database_url, CredentialRow)
    token = httpx.post(
        f"{limited.url}/api/admin/tokens",
        content=json.dumps({"customer_id": "cust_a"}),
        headers={"content-type": "text/plain", **admin},
    )
    assert_error(token, 415, "unsupported_media_type")
    assert count_rows(limited.database_url, CredentialRow) == before
    link = httpx.post(
        f"{limited.url}/api/forwarding/customers/cust_a/link",
        content=json.dumps({"stripe_customer_id": "cus_abc"}),
        headers={"content-type": "text/plain", **limited.operator_headers("editor")},
    )
    assert_error(link, 415, "unsupported_media_type")
