"""Issue 12, point 5: commands print text for people and, with ``--output json``, one JSON
document for scripts; a created secret stays the last line of the text either way."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from click.testing import CliRunner

from collector.adapters.db.migrate import head_revision
from collector.cli import main
from common.schema import UsageReport
from tests.support.collector import RunningCollector


def invoke(collector: RunningCollector, *args: str) -> str:
    env = {"COLLECTOR_DATABASE_URL": collector.database_url}
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def as_json(collector: RunningCollector, *args: str) -> Any:
    return json.loads(invoke(collector, *args, "--output", "json"))


def test_db_current_as_text_and_json(collector: RunningCollector) -> None:
    head = head_revision()
    assert invoke(collector, "db", "current").splitlines() == [
        f"current: {head}",
        f"head:    {head}",
        f"state:   at head {head}",
    ]
    assert as_json(collector, "db", "current") == {"current": head, "head": head, "migrated": True}


def test_credentials_as_text_and_json(collector: RunningCollector) -> None:
    text = invoke(collector, "tokens", "create", "--customer", "acme", "--name", "edge-1")
    assert text.splitlines()[-1].startswith("umt_")
    created = as_json(collector, "tokens", "create", "--customer", "acme")
    assert created["secret"].startswith("umt_")
    assert (created["customer_id"], created["state"], created["role"]) == ("acme", "active", None)
    listed = as_json(collector, "tokens", "list", "--customer", "acme")
    assert {t["id"] for t in listed} >= {created["id"]}
    assert all("secret" not in t for t in listed)
    table = invoke(collector, "tokens", "list").splitlines()
    assert table[0].split() == [
        "ID",
        "ROLE",
        "CUSTOMER",
        "NAME",
        "CREATED",
        "LAST",
        "USED",
        "STATE",
    ]
    assert any("edge-1" in line for line in table[1:])

    key = as_json(collector, "keys", "create", "--role", "viewer")
    assert (key["role"], key["kind"]) == ("viewer", "operator")
    assert key["secret"].startswith("umk_")
    assert [k["id"] for k in as_json(collector, "keys", "list") if k["role"] == "viewer"] == [
        key["id"]
    ]


def test_billing_commands_as_json(collector: RunningCollector) -> None:
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    report = UsageReport(
        customer_id="acme",
        instance_id="acme-prod",
        window_start=end - timedelta(hours=1),
        window_end=end,
        metrics={"devices": 10},
    )
    sent = httpx.post(
        f"{collector.url}/api/usage/report",
        content=report.to_json(),
        headers={"content-type": "application/json", **collector.ingest_headers("acme")},
    )
    assert sent.status_code == 201
    retired = as_json(collector, "instances", "retire", "acme", "acme-prod")
    assert retired == {"customer_id": "acme", "instance_id": "acme-prod", "metrics": ["devices"]}
    assert as_json(collector, "forwarding", "ageing") == []
    assert as_json(collector, "forwarding", "rebill", "--customer", "acme") == []
