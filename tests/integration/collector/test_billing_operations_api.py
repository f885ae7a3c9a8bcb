"""Operators retire instances, see what waits and why, and read the audit log over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from click.testing import CliRunner

from collector.cli import main
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


def test_the_cli_retires_instances_and_answers_mistakes_in_one_line(
    collector: RunningCollector,
) -> None:
    env = {"COLLECTOR_DATABASE_URL": collector.database_url}
    runner = CliRunner()
    assert send(collector, "acme", "acme-prod", 2, devices=100).status_code == 201
    retired = runner.invoke(main, ["instances", "retire", "acme", "acme-prod"], env=env)
    assert retired.exit_code == 0, retired.output
    assert "retired acme-prod of acme: devices" in retired.output
    again = runner.invoke(main, ["instances", "retire", "acme", "acme-prod"], env=env)
    assert again.exit_code == 1
    assert again.output.startswith("usage-collector: instance 'acme-prod' of customer 'acme'")
    assert "Traceback" not in again.output
    both = runner.invoke(main, ["forwarding", "rebill"], env=env)
    assert both.exit_code == 2
    assert "give exactly one of --batch or --customer" in both.output
    missing = runner.invoke(main, ["forwarding", "rebill", "--batch", "7"], env=env)
    assert missing.exit_code == 1
    assert "no batch 7" in missing.output
    ageing = runner.invoke(main, ["forwarding", "ageing"], env=env)
    assert ageing.exit_code == 0
    assert "no waiting usage near Stripe's 35-day limit" in ageing.output


def test_a_cli_relink_carries_the_device_count_like_the_api(collector: RunningCollector) -> None:
    """The CLI and the API share one link service: a relink through either is audited alike."""
    env = {"COLLECTOR_DATABASE_URL": collector.database_url}
    runner = CliRunner()
    for stripe_customer in ("cus_first", "cus_second"):
        linked = runner.invoke(
            main, ["customers", "link", "acme", stripe_customer, "--force"], env=env
        )
        assert linked.exit_code == 0, linked.output
    assert "COLLECTOR_STRIPE_API_KEY" in linked.output
    audit = httpx.get(
        f"{collector.url}/api/forwarding/audit",
        params={"customer_id": "acme"},
        headers=collector.operator_headers("viewer"),
    ).json()
    (relink,) = [a for a in audit if a["action"] == "relink"]
    assert relink["actor"] == "cli"
    assert relink["detail"]["from"]["stripe_customer_id"] == "cus_first"
    assert relink["detail"]["to"]["stripe_customer_id"] == "cus_second"
