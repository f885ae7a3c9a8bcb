"""The agent image as built: what it runs, as whom, what it holds and where it writes."""

from __future__ import annotations

import json

from images.build import Buildah
from tests.integration.images.conftest import Deployment
from tests.support.images import Container, image_config, under

AGENT_WRITABLE = ("/var/lib/usage-agent", "/tmp")
COLLECTOR_ONLY = ("collector", "litestar", "sqlalchemy", "stripe", "alembic", "asyncpg", "uvicorn")


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


def test_agent_image_imports_everything_it_runs(agent_box: Container) -> None:
    agent_box.python(
        "import agent.cli.wiring, agent.adapters.kube, agent.adapters.prometheus\n"
        "from kubernetes import client, config"
    )


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
