"""docs/examples/customer-instance: the seed's `billingExporter` values work unchanged."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.integration.charts.checks import assert_restricted, env_of, validate_strict
from tests.support.helm import CHARTS, REPO_ROOT, Helm

EXAMPLE = REPO_ROOT / "docs" / "examples" / "customer-instance"
NAMESPACE = "customer-acme"


@pytest.fixture(scope="module")
def umbrella(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example with its dependency in charts/, as `helm dependency build` leaves it."""
    chart = tmp_path_factory.mktemp("umbrella") / "customer-instance"
    shutil.copytree(EXAMPLE, chart)
    shutil.copytree(CHARTS / "usage-agent", chart / "charts" / "usage-agent")
    return chart


def test_the_dependency_is_the_agent_chart_aliased_billing_exporter() -> None:
    chart = yaml.safe_load((EXAMPLE / "Chart.yaml").read_text())
    agent = yaml.safe_load((CHARTS / "usage-agent" / "Chart.yaml").read_text())

    (dependency,) = chart["dependencies"]
    assert dependency["name"] == agent["name"]
    assert dependency["version"] == agent["version"]
    assert dependency["alias"] == "billingExporter"
    assert (EXAMPLE / dependency["repository"].removeprefix("file://")).resolve() == (
        CHARTS / "usage-agent"
    )


def test_seed_values_render_an_hourly_enabled_agent(helm: Helm, umbrella: Path) -> None:
    seed = yaml.safe_load((EXAMPLE / "seed-002-values.yaml").read_text())
    assert seed == {
        "billingExporter": {
            "enabled": True,
            "env": {"ENABLE_USAGE_REPORTING": "true", "COLLECTION_INTERVAL": "3600000"},
        }
    }

    rendered = helm.render(umbrella, seed, namespace=NAMESPACE, release="acme")

    for doc in rendered.all:
        validate_strict(doc)
    assert_restricted(rendered.all)
    (container,) = rendered.one("Deployment")["spec"]["template"]["spec"]["containers"]
    env = env_of(container)
    assert env["AGENT_ENABLED"] == "true"
    assert env["AGENT_INTERVAL"] == "3600000ms"  # the chart's milliseconds, read as 1h
    assert "ENABLE_USAGE_REPORTING" not in env
    assert "COLLECTION_INTERVAL" not in env
    assert env["AGENT_COLLECTOR_TOKEN"] == {
        "secretKeyRef": {"name": "usage-agent-token", "key": "token"}
    }
    assert rendered.one("ClusterRole")["rules"][0]["resourceNames"] == [NAMESPACE]


def test_the_seed_switch_off_turns_reporting_off(helm: Helm, umbrella: Path) -> None:
    values = {"billingExporter": {"enabled": True, "env": {"ENABLE_USAGE_REPORTING": "false"}}}

    rendered = helm.render(umbrella, values, namespace=NAMESPACE, release="acme")

    (container,) = rendered.one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert env_of(container)["AGENT_ENABLED"] == "false"


def test_without_the_seed_values_no_agent_is_installed(helm: Helm, umbrella: Path) -> None:
    rendered = helm.render(umbrella, namespace=NAMESPACE, release="acme")

    assert rendered.all == []
