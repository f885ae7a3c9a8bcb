"""Every name the charts create or refer to is one the API server accepts (issue 12, point 9).

The seed's umbrella chart aliases the agent as `billingExporter`; Helm makes the alias the
subchart's name, so the agent's objects were called `initech-billingExporter`, which a real API
server refuses. See tests/integration/charts/names.py for the rules.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.charts.names import all_name_problems
from tests.integration.charts.test_usage_agent_chart import VALUE_SETS as AGENT_VALUE_SETS
from tests.integration.charts.test_usage_collector_chart import (
    VALUE_SETS as COLLECTOR_VALUE_SETS,
)
from tests.support.helm import CHARTS, REPO_ROOT, Helm, HelmError

EXAMPLE = REPO_ROOT / "docs" / "examples" / "customer-instance"
SEED_VALUES = yaml.safe_load((EXAMPLE / "seed-002-values.yaml").read_text())
# Helm's longest release name (53 characters): the names built from it must be truncated.
LONG_RELEASE = ("initech-" * 8)[:53].rstrip("-")
# Helm allows dots in release names; Service names (DNS-1035 labels) do not.
RELEASES = ["initech", "initech.prod", LONG_RELEASE]

SEED_UMBRELLA_CHART = {
    "apiVersion": "v2",
    "name": "customer-instance",
    "version": "1.0.0",
    "dependencies": [
        {
            "name": "usage-agent",
            "version": "0.1.0",
            "repository": "file://../usage-agent",
            "alias": "billingExporter",
            "condition": "billingExporter.enabled",
        }
    ],
}

# Every template of the agent, reached through the umbrella's alias.
UMBRELLA_EVERYTHING = {
    "billingExporter": {
        "enabled": True,
        "env": {"ENABLE_USAGE_REPORTING": "true", "COLLECTION_INTERVAL": "3600000"},
        "replicaCount": 3,
        "leaderElection": {"enabled": True},
        "collector": {"token": "tok_inline", "tls": {"caBundleConfigMap": "corp-ca"}},
        "deviceApi": {"url": "http://devices:8080", "token": "dev-token"},
        "spool": {"persistence": {"enabled": True, "accessModes": ["ReadWriteMany"]}},
        "metrics": {"serviceMonitor": {"enabled": True}},
        "podDisruptionBudget": {"enabled": True},
    }
}


def _with_agent(chart: Path) -> Path:
    """``chart`` with the agent in charts/, as `helm dependency build` leaves it."""
    shutil.copytree(CHARTS / "usage-agent", chart / "charts" / "usage-agent")
    return chart


@pytest.fixture(scope="module")
def seed_umbrella(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed's customer-instance chart: nothing but the aliased agent."""
    chart = tmp_path_factory.mktemp("seed") / "customer-instance"
    chart.mkdir()
    (chart / "Chart.yaml").write_text(yaml.safe_dump(SEED_UMBRELLA_CHART, sort_keys=False))
    return _with_agent(chart)


@pytest.fixture(scope="module")
def example_umbrella(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chart = tmp_path_factory.mktemp("example") / "customer-instance"
    shutil.copytree(EXAMPLE, chart)
    return _with_agent(chart)


def test_the_seed_umbrella_names_the_agent_in_lowercase(helm: Helm, seed_umbrella: Path) -> None:
    rendered = helm.render(seed_umbrella, SEED_VALUES, namespace="initech", release="initech")

    assert rendered.one("Deployment")["metadata"]["name"] == "initech-billingexporter"
    assert rendered.one("Service")["metadata"]["name"] == "initech-billingexporter-metrics"
    assert all_name_problems(rendered.all) == []


UMBRELLA_CASES = [
    *(pytest.param(SEED_VALUES, release, id=f"seed-{release}") for release in RELEASES),
    pytest.param(UMBRELLA_EVERYTHING, LONG_RELEASE, id="everything-long-release"),
]


@pytest.mark.parametrize(("values", "release"), UMBRELLA_CASES)
def test_every_name_in_the_seed_umbrella_is_valid(
    helm: Helm, seed_umbrella: Path, values: dict[str, Any], release: str
) -> None:
    rendered = helm.render(seed_umbrella, values, namespace="initech", release=release)

    assert rendered.manifests
    assert all_name_problems(rendered.all) == []


@pytest.mark.parametrize(
    ("values", "release"),
    [
        pytest.param(SEED_VALUES, "acme", id="seed"),
        pytest.param(UMBRELLA_EVERYTHING, LONG_RELEASE, id="everything-long-release"),
    ],
)
def test_every_name_in_the_customer_instance_example_is_valid(
    helm: Helm, example_umbrella: Path, values: dict[str, Any], release: str
) -> None:
    rendered = helm.render(example_umbrella, values, namespace="customer-acme", release=release)

    assert rendered.of_kind("ClusterRole")  # identity.fromNamespace in the example's defaults
    assert all_name_problems(rendered.all) == []


NAME_OVERRIDES: dict[str, dict[str, Any]] = {
    "name-override-camel-case": {"nameOverride": "billingExporter"},
    "fullname-override-underscore-and-dot": {"fullnameOverride": "Acme_Usage.Agent"},
}


def _cases(value_sets: dict[str, dict[str, Any]]) -> list[Any]:
    """Every value set under the longest release name, and the defaults under a dotted one."""
    sets = {**value_sets, **NAME_OVERRIDES}
    return [
        *(pytest.param(sets[name], LONG_RELEASE, id=name) for name in sorted(sets)),
        pytest.param({}, "initech.prod", id="dotted-release"),
    ]


@pytest.mark.parametrize(("values", "release"), _cases(AGENT_VALUE_SETS))
def test_every_name_in_the_agent_chart_is_valid(
    helm: Helm, values: dict[str, Any], release: str
) -> None:
    rendered = helm.render("usage-agent", values, namespace="customer-acme", release=release)

    assert all_name_problems(rendered.all) == []


@pytest.mark.parametrize(("values", "release"), _cases(COLLECTOR_VALUE_SETS))
def test_every_name_in_the_collector_chart_is_valid(
    helm: Helm, values: dict[str, Any], release: str
) -> None:
    values = {**values, "prometheusRule": {"enabled": True}}

    rendered = helm.render("usage-collector", values, namespace="usage-metering", release=release)

    assert all_name_problems(rendered.all) == []


@pytest.mark.parametrize("chart", ["usage-agent", "usage-collector"])
def test_a_release_name_no_service_can_carry_is_refused_clearly(helm: Helm, chart: str) -> None:
    with pytest.raises(HelmError, match="must start with a letter"):
        helm.render(chart, namespace="usage-metering", release="1acme")
