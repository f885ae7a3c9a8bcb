"""values.schema.json: every object level is closed, so a typo in values fails the install."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

CHARTS = Path(__file__).resolve().parents[3] / "charts"
# Helm hands every subchart the parent's `global` map, whose keys no chart can know.
OPEN_BY_DESIGN = {"/properties/global"}


def _objects(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if node.get("type") == "object" or "properties" in node:
            yield where, node
        for key, value in node.items():
            yield from _objects(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _objects(value, f"{where}/{index}")


@pytest.mark.parametrize("chart", ["usage-agent", "usage-collector"])
def test_every_object_level_forbids_additional_properties(chart: str) -> None:
    schema = json.loads((CHARTS / chart / "values.schema.json").read_text())

    open_levels = [
        where
        for where, node in _objects(schema)
        if where not in OPEN_BY_DESIGN
        and not where.startswith(("/if", "/then"))
        and node.get("additionalProperties") is not False
    ]
    assert open_levels == []


@pytest.mark.parametrize("chart", ["usage-agent", "usage-collector"])
def test_every_default_value_is_declared(chart: str) -> None:
    schema = json.loads((CHARTS / chart / "values.schema.json").read_text())
    values = yaml.safe_load((CHARTS / chart / "values.yaml").read_text())

    assert set(values) <= set(schema["properties"])
