"""The collector image as built: migrate, serve, as whom, without the sandbox, where it writes."""

from __future__ import annotations

import json

from images.build import Buildah
from tests.integration.images.conftest import Deployment
from tests.support.images import Container, image_config, under

COLLECTOR_WRITABLE = ("/var/lib/usage-collector", "/tmp")
# Left out of the image (images/lock.py): litestar's command line.
LEFT_OUT = ("rich", "rich_click", "pygments", "markdown_it")


def test_collector_image_runs_as_65532_in_its_data_directory(
    buildah: Buildah, collector_image: str, collector_box: Container
) -> None:
    config = image_config(buildah, collector_image)
    ids = collector_box.python("import os; print(os.getuid(), os.getgid(), os.getcwd())")

    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["/opt/venv/bin/usage-collector"]
    assert config["Cmd"] == ["serve", "--host", "0.0.0.0", "--port", "3100"]
    assert ids.split() == ["65532", "65532", "/var/lib/usage-collector"]


def test_collector_image_migrates_sqlite_then_serves_ready(deployment: Deployment) -> None:
    assert "upgraded" in deployment.migrated
    assert deployment.ready_from_host.json()["status"] == "ok"
    assert json.loads(deployment.ready_inside)["checks"]["schema"].startswith("at head")
    assert deployment.database_owner.split() == ["65532", "65532"]


def test_collector_image_writes_only_its_declared_paths(deployment: Deployment) -> None:
    written = deployment.collector_written

    assert "/var/lib/usage-collector/usage.db" in written
    assert [path for path in written if not under(path, COLLECTOR_WRITABLE)] == []


def test_collector_image_has_no_stripe_sandbox_and_says_so(collector_box: Container) -> None:
    files = collector_box.python(
        "import importlib.metadata as md, importlib.util as u\n"
        "print(u.find_spec('collector.stripe_sandbox'))\n"
        "print(sum(1 for f in md.files('iot-usage-metering') if 'stripe_sandbox' in str(f)))"
    )
    result = collector_box.run("/opt/venv/bin/usage-collector", "stripe", "sandbox")

    assert files.split() == ["None", "0"]
    assert result.returncode == 1
    assert result.stderr.startswith(
        "usage-collector: the Stripe sandbox is not installed in this image"
    )
    assert "Traceback" not in result.stderr


def test_collector_image_holds_none_of_the_agents_code(collector_box: Container) -> None:
    found = collector_box.python(
        "import importlib.util as u; print([m for m in ('agent', 'kubernetes', "
        "'prometheus_api_client') if u.find_spec(m) is not None])"
    )

    assert found.strip() == "[]"


def test_collector_image_imports_every_module_and_shows_help_for_every_command(
    collector_box: Container,
) -> None:
    found = collector_box.python(
        f"""
import importlib, importlib.util as u, json, pkgutil
import collector, common
from click.testing import CliRunner
from collector.cli import main
modules = [
    m.name
    for package in (collector, common)
    for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
    if not m.name.endswith(".__main__")
]
for name in modules:
    importlib.import_module(name)

def commands(command, path):
    yield path
    for name, sub in getattr(command, "commands", {{}}).items():
        yield from commands(sub, [*path, name])

runner = CliRunner()
helps = {{" ".join(p): runner.invoke(main, [*p, "--help"]) for p in commands(main, [])}}
print(json.dumps({{
    "modules": len(modules),
    "commands": len(helps),
    "failed": {{p: r.output[-500:] for p, r in helps.items() if r.exit_code != 0}},
    "left_out": [m for m in {list(LEFT_OUT)!r} if u.find_spec(m) is not None],
}}))
"""
    )

    result = json.loads(found)
    assert result["modules"] > 80
    assert result["commands"] > 15
    assert result["failed"] == {}
    assert result["left_out"] == []


def test_collector_image_serves_its_openapi_document_and_api_docs(
    deployment: Deployment,
) -> None:
    assert deployment.openapi.status_code == 200, deployment.openapi.text[-2000:]
    assert "/api/usage/{customer_id}/latest" in deployment.openapi.json()["paths"]
    assert deployment.api_docs.status_code == 200
    assert "/schema/assets/" in deployment.api_docs.text
