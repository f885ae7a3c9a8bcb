"""Both images, built once per session with buildah from the local Debian base (images/build.py).

Building is the slow part (cold: the base from Debian's mirror and the wheelhouse from PyPI;
warm: the two ``buildah bud`` runs), and so is each container (vfs copies the whole root
filesystem), so the tests share them: one container per image for inspection, and one
:class:`Deployment` where the collector image migrates and serves and the agent image reports
to it, each container snapshotted before and after to see what it wrote.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from demo.simulator import Simulator
from images.build import Buildah, Built, ImageBuildError, build_all
from tests.support.binaries import free_port
from tests.support.images import Container, require_image_tools, wait_for_http

AGENT = "/opt/venv/bin/usage-agent"
COLLECTOR = "/opt/venv/bin/usage-collector"


@pytest.fixture(scope="session")
def buildah() -> Buildah:
    require_image_tools()
    return Buildah.in_cache()


@pytest.fixture(scope="session")
def built(buildah: Buildah) -> Built:
    try:
        return build_all(log=False)
    except ImageBuildError as error:
        pytest.fail(f"the images did not build: {error}", pytrace=False)


@pytest.fixture(scope="session")
def agent_image(built: Built) -> str:
    return built.images["agent"]


@pytest.fixture(scope="session")
def collector_image(built: Built) -> str:
    return built.images["collector"]


@pytest.fixture(scope="session")
def agent_box(buildah: Buildah, agent_image: str) -> Iterator[Container]:
    """An agent container to look into; nothing that runs in it is meant to write."""
    with Container.of(buildah, agent_image) as container:
        yield container


@pytest.fixture(scope="session")
def collector_box(buildah: Buildah, collector_image: str) -> Iterator[Container]:
    with Container.of(buildah, collector_image) as container:
        yield container


@dataclass(frozen=True)
class Deployment:
    """What happened when the two images ran together, for the tests to assert on."""

    migrated: str
    ready_from_host: httpx.Response
    ready_inside: str
    database_owner: str
    agent_run: str
    agent_exit: int
    latest: httpx.Response
    collector_written: list[str]
    agent_written: list[str]
    agent_write_attempts: str


@pytest.fixture(scope="session")
def deployment(
    buildah: Buildah,
    agent_image: str,
    collector_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Deployment:
    """The collector image migrates SQLite and serves; the agent image reports one window to it.

    The agent reads a simulated customer instance (demo.simulator) on loopback; both
    containers share the host's network, as buildah's chroot isolation gives them.
    """
    log = tmp_path_factory.mktemp("images") / "serve.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (
        Simulator(devices=12, active=5, page_size=5) as simulator,
        Container.of(buildah, collector_image) as collector,
    ):
        migrated = collector.check(COLLECTOR, "db", "upgrade")
        create_token = [COLLECTOR, "tokens", "create", "--customer", "cust-image"]
        token = json.loads(collector.check(*create_token, "--output", "json"))["secret"]
        create_key = [COLLECTOR, "keys", "create", "--role", "viewer", "--output", "json"]
        viewer = json.loads(collector.check(*create_key))["secret"]
        with collector.serving(COLLECTOR, "serve", "--port", str(port), log=log):
            ready_from_host = wait_for_http(f"{url}/health/ready", log=log)
            ready_inside = collector.python(
                "import urllib.request; print(urllib.request.urlopen("
                f"'{url}/health/ready', timeout=5).read().decode())"
            )
            with Container.of(buildah, agent_image) as agent:
                run = agent.run(
                    AGENT,
                    "run",
                    "--once",
                    env={
                        "AGENT_CUSTOMER_ID": "cust-image",
                        "AGENT_INSTANCE_ID": "inst-image",
                        "AGENT_COLLECTOR_URL": url,
                        "AGENT_COLLECTOR_TOKEN": token,
                        "AGENT_DEVICE_API_URL": f"{simulator.url}/api/devices",
                        "AGENT_METRICS_URL": f"{simulator.url}/metrics",
                        "AGENT_INTERVAL": "1m",
                    },
                )
                # What a careless dependency might do: write beside the code or at the root.
                attempts = agent.python(
                    "for path in ('/opt/venv/x', '/x', '/etc/x'):\n"
                    "    try:\n"
                    "        open(path, 'w').close(); print(path, 'written')\n"
                    "    except OSError as error:\n"
                    "        print(path, type(error).__name__)"
                )
                agent_written = agent.written()
            latest = httpx.get(
                f"{url}/api/usage/cust-image/latest",
                headers={"Authorization": f"Bearer {viewer}"},
                timeout=10,
            )
        owner = collector.python(
            "import os; s = os.stat('/var/lib/usage-collector/usage.db'); print(s.st_uid, s.st_gid)"
        )
        collector_written = collector.written()
    return Deployment(
        migrated=migrated,
        ready_from_host=ready_from_host,
        ready_inside=ready_inside,
        database_owner=owner,
        agent_run=run.stdout + run.stderr,
        agent_exit=run.returncode,
        latest=latest,
        collector_written=collector_written,
        agent_written=agent_written,
        agent_write_attempts=attempts,
    )
