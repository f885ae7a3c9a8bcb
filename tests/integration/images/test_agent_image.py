"""The agent image as built: what it runs, as whom, what it holds and where it writes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from images.build import Buildah
from tests.integration.images.conftest import POD, Deployment
from tests.support.images import Container, image_config, under
from tests.support.prometheus import PrometheusServer, running_prometheus

AGENT_WRITABLE = ("/var/lib/usage-agent", "/tmp")
COLLECTOR_ONLY = ("collector", "litestar", "sqlalchemy", "stripe", "alembic", "asyncpg", "uvicorn")
# Left out of the image (images/lock.py): the asyncio Kubernetes client and what only it or
# prometheus_api_client.utils needs.
LEFT_OUT = (
    "kubernetes.aio",
    "aiohttp",
    "aiohttp_retry",
    "yarl",
    "multidict",
    "dateparser",
    "regex",
)


def test_agent_image_runs_usage_agent_help_as_65532(
    buildah: Buildah, agent_image: str, agent_box: Container
) -> None:
    config = image_config(buildah, agent_image)

    help_text = agent_box.check(*config["Entrypoint"], "--help")
    ids = agent_box.python("import os; print(os.getuid(), os.getgid(), os.getcwd())")

    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["/opt/venv/bin/usage-agent"]
    assert "run" in help_text
    assert ids.split() == ["65532", "65532", "/var/lib/usage-agent"]


def test_agent_image_holds_none_of_the_collectors_code_or_dependencies(
    agent_box: Container,
) -> None:
    probe = f"""
import importlib.metadata as md, importlib.util as u, json
print(json.dumps({{
    "found": [m for m in {list(COLLECTOR_ONLY)!r} if u.find_spec(m) is not None],
    "files": [str(f) for f in md.files("iot-usage-metering")],
    "dists": sorted(d.metadata["Name"].lower() for d in md.distributions()),
}}))
"""
    found = json.loads(agent_box.python(probe))
    site = next((agent_box.root / "opt/venv/lib").glob("python3.*/site-packages"))

    assert found["found"] == []
    assert not [f for f in found["files"] if f.startswith("collector/")]
    assert any(f.startswith("agent/") for f in found["files"])
    assert not {"litestar", "sqlalchemy", "stripe"} & set(found["dists"])
    assert not (site / "collector").exists()


def test_agent_image_imports_every_module_of_the_agent_and_the_sync_kubernetes_client(
    agent_box: Container,
) -> None:
    found = agent_box.python(
        f"""
import importlib, importlib.util as u, json, pkgutil
import agent, common, kubernetes
from kubernetes import client, config, dynamic, leaderelection, stream, utils, watch
modules = [
    m.name
    for package in (agent, common)
    for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
    if not m.name.endswith(".__main__")
]
for name in modules:
    importlib.import_module(name)
print(json.dumps({{
    "modules": len(modules),
    "left_out": [m for m in {list(LEFT_OUT)!r} if u.find_spec(m) is not None],
}}))
"""
    )

    result = json.loads(found)
    assert result["modules"] > 40
    assert result["left_out"] == []


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    with running_prometheus(Path(tmp_path_factory.mktemp("prometheus"))) as server:
        yield server


def test_agent_image_queries_a_real_prometheus_through_its_adapter(
    agent_box: Container, prometheus: PrometheusServer
) -> None:
    peak = agent_box.python(
        f"""
import asyncio
from datetime import UTC, datetime, timedelta
from agent.adapters.prometheus import PrometheusSource
from common.windows import Window
end = datetime.now(UTC).replace(second=0, microsecond=0)
source = PrometheusSource({prometheus.url!r}, scrape_interval=timedelta(seconds=15))
peak = asyncio.run(source.peak("vector(3)", Window(end - timedelta(minutes=1), end)))
source.close()
print(peak.value, peak.points, peak.expected)
"""
    )

    assert peak.split() == ["3", "4", "4"]


def test_agent_image_elects_itself_and_takes_its_identity_from_its_namespace(
    deployment: Deployment,
) -> None:
    assert deployment.agent_exit == 0, deployment.agent_run
    assert deployment.lease_writes[0] == ("create", POD)
    report = deployment.latest.json()
    assert (report["customer_id"], report["instance_id"]) == ("cust-image", "inst-image")


def test_agent_image_report_is_stored_by_the_collector_image(deployment: Deployment) -> None:
    assert deployment.agent_exit == 0, deployment.agent_run
    assert deployment.latest.status_code == 200, deployment.latest.text
    report = deployment.latest.json()
    assert report["instance_id"] == "inst-image"
    assert report["metrics"]["devices"] == 5


def test_agent_image_writes_only_its_declared_paths(deployment: Deployment) -> None:
    written = deployment.agent_written

    assert "/var/lib/usage-agent/agent-state/agent-state.db" in written
    assert [path for path in written if not under(path, AGENT_WRITABLE)] == []
    assert "written" not in deployment.agent_write_attempts
