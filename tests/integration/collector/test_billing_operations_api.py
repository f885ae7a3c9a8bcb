"""Operators retire instances, see what waits and why, and read the audit log over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from common.schema import UsageReport
from tests.support.collector import RunningCollector

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def send(
    collector: RunningCollector, customer: str, instance: str, hour: int, **metrics
) -> httpx.Response:
    end = NOW - timedelta(hours=hour)
    report = UsageReport(
        customer_id=customer,
        instance_id=instance,
        window_start=end - timedelta(hours=1),
        window_end=end,
        metrics=metrics,
    )
    return httpx.post(
        f"{collector.url}/api/usage/report",
        content=report.to_json(),
        headers={"content-type": "application/json", **collector.ingest_headers(customer)},
    )


def test_retiring_an_instance_is_audited_and_only_editors_may(collector: RunningCollector) -> None:
    for instance, devices in (("acme-prod", 100), ("acme-staging", 20)):
        assert send(collector, "acme", instance, 2, devices=devices).status_code == 201
    url = f"{collector.url}/api/forwarding/customers/acme/instances/acme-staging/retire"
    viewer = collector.operator_headers("viewer")
    assert httpx.post(url, headers=viewer).status_code == 403
    editor = collector.operator_headers("editor")
    retired = httpx.post(url, headers=editor)
    assert retired.status_code == 200, retired.text
    assert retired.json() == {
        "customer_id": "acme",
        "instance_id": "acme-staging",
        "metrics": ["devices"],
    }
    again = httpx.post(url, headers=editor)
    assert again.status_code == 404
    assert again.json()["error"] == "not_found"
    audit = httpx.get(
        f"{collector.url}/api/forwarding/audit", params={"customer_id": "acme"}, headers=viewer
    ).json()
    assert [(a["action"], a["detail"]["instance_id"]) for a in audit] == [
        ("retire_instance", "acme-staging")
    ]


def test_status_says_which_customers_wait_and_why(collector: RunningCollector) -> None:
    assert send(collector, "unlinked", "i", 3, mqtt_messages=5).status_code == 201
    status = httpx.get(
        f"{collector.url}/api/forwarding/status", headers=collector.operator_headers("viewer")
    ).json()
    (waiting,) = [w for w in status["waiting"] if w["customer_id"] == "unlinked"]
    assert "not linked" in waiting["reason"]
    assert status["ageing"] == []


def test_rebilling_a_batch_that_is_not_aged_is_refused_with_one_error_shape(
    collector: RunningCollector,
) -> None:
    editor = collector.operator_headers("editor")
    missing = httpx.post(f"{collector.url}/api/forwarding/batches/999/rebill", headers=editor)
    assert missing.status_code == 404
    assert set(missing.json()) >= {"error", "detail"}
    nothing = httpx.post(
        f"{collector.url}/api/forwarding/customers/acme/rebill-aged", headers=editor
    )
    assert nothing.status_code == 200
    assert nothing.json() == []
