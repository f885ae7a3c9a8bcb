"""Metric values are published as one JSON number type (issue 10, item 8)."""

from __future__ import annotations

import json

import httpx

from tests.support.collector import RunningCollector


def test_no_schema_offers_number_or_integer_as_two_branches(collector: RunningCollector) -> None:
    """``oneOf: [number, integer]`` matched every integer twice: strict clients refused it."""
    document = httpx.get(f"{collector.url}/schema/openapi.json").json()
    text = json.dumps(document)
    assert '{"type": "number"}, {"type": "integer"}' not in text
    assert '{"type": "integer"}, {"type": "number"}' not in text
    metrics = document["components"]["schemas"]["ReportOut"]["properties"]["metrics"]
    assert metrics["additionalProperties"] == {"type": "number"}
