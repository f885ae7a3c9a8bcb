"""Every `helm upgrade --install` in docs/deploy.md renders, with exactly the files it names."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.charts.checks import assert_restricted, validate_strict
from tests.support.helm import CHARTS, REPO_ROOT, Helm

DOC = REPO_ROOT / "docs" / "deploy.md"
UMBRELLA = "docs/examples/customer-instance"


def _commands() -> list[list[str]]:
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [shlex.split(line) for line in lines if line.startswith("helm upgrade --install")]


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def test_the_doc_installs_the_collector_the_agent_and_the_umbrella() -> None:
    charts = {command[4] for command in _commands()}
    assert charts == {"charts/usage-collector", "charts/usage-agent", UMBRELLA}


@pytest.mark.parametrize("command", _commands(), ids=" ".join)
def test_command_renders(helm: Helm, command: list[str], tmp_path: Path) -> None:
    release, chart = command[3], command[4]
    options = command[5:]
    assert "--set" not in options, "put values in a file under docs/examples/ instead"
    namespace = options[options.index("--namespace") + 1]
    values: dict[str, Any] = {}
    for index, option in enumerate(options):
        if option == "-f":
            values = _merge(values, yaml.safe_load((REPO_ROOT / options[index + 1]).read_text()))
    chart_path = REPO_ROOT / chart
    if chart == UMBRELLA:  # what `helm dependency build` does
        chart_path = tmp_path / "customer-instance"
        shutil.copytree(REPO_ROOT / chart, chart_path)
        shutil.copytree(CHARTS / "usage-agent", chart_path / "charts" / "usage-agent")

    rendered = helm.render(chart_path, values, namespace=namespace, release=release)

    for doc in rendered.all:
        validate_strict(doc)
    assert_restricted(rendered.all)
