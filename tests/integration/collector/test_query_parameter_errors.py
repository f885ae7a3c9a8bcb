"""An invalid query parameter is named as the caller typed it, on every endpoint."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.support.collector import RunningCollector

CONCRETE = {"customer_id": "cust_1", "batch_id": "1", "credential_id": "tok_x"}


def invalid_value(schema: dict[str, Any]) -> str | None:
    """A value the parameter's schema refuses, or None when any string would do."""
    merged = {**schema}
    for option in schema.get("oneOf", []):
        if option.get("type") != "null":
            merged = {**option, **merged}
    if "pattern" in merged:
        return "no such value!"
    if merged.get("type") == "integer":
        return "not-a-number"
    if merged.get("type") == "boolean":
        return "perhaps"
    if merged.get("format") == "date-time":
        return "yesterday"
    if "maxLength" in merged:
        return "x" * (merged["maxLength"] + 1)
    if merged.get("minLength"):
        return ""
    return None


def test_each_query_parameter_error_names_the_parameter_as_typed(
    collector: RunningCollector,
) -> None:
    admin = collector.operator_headers("admin")
    document = httpx.get(f"{collector.url}/schema/openapi.json").json()
    checked = []
    for path, item in document["paths"].items():
        operation = item.get("get")
        if operation is None:
            continue
        url = re.sub(r"\{(\w+)\}", lambda m: CONCRETE.get(m.group(1), "x"), path)
        for parameter in operation.get("parameters", []):
            if parameter["in"] != "query":
                continue
            name, value = parameter["name"], invalid_value(parameter["schema"])
            if value is None:
                continue
            answer = httpx.get(f"{collector.url}{url}", params={name: value}, headers=admin)
            assert answer.status_code == 400, (path, name, answer.text)
            assert answer.json()["field"] == name, (path, name, answer.text)
            assert repr(name) in answer.json()["detail"], answer.text
            checked.append(f"{path}?{name}")
    assert "/api/forwarding/batches?state" in checked
    assert "/api/usage/{customer_id}/totals?since" in checked
    assert len(checked) >= 8, checked


def test_batch_state_error_names_state_not_the_handler_argument(
    collector: RunningCollector,
) -> None:
    answer = httpx.get(
        f"{collector.url}/api/forwarding/batches",
        params={"state": "lost"},
        headers=collector.operator_headers("viewer"),
    )

    assert answer.status_code == 400
    body = answer.json()
    assert body["field"] == "state"
    assert "batch_state" not in answer.text
    assert "pending|sent|dead" in body["detail"]
    ok = httpx.get(
        f"{collector.url}/api/forwarding/batches",
        params={"state": "dead"},
        headers=collector.operator_headers("viewer"),
    )
    assert ok.status_code == 200, ok.text
