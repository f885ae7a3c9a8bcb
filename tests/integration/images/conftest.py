"""Both images, built once per session with buildah from the local Debian bases (images/build.py).

Building is the slow part (cold: the base from Debian's mirror and the wheelhouse from PyPI;
warm: the two ``buildah bud`` runs), and so is each container (vfs copies the whole root
filesystem), so the tests share them: one container per image for inspection, and one
:class:`Deployment` where the collector image migrates and serves and the agent image elects
itself through a Lease, reads its identity from its namespace and reports to it, each container
snapshotted before and after to see what it wrote.

Each image installs an exact list with the declared dependencies it never imports left out
(images/lock.py), so these tests run what the images run: every module of the program, the
command lines, the Kubernetes client, Prometheus queries, migrations, serving and the API docs.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml

from demo.simulator import Simulator
from images.build import Buildah, Built, ImageBuildError, build_all
from tests.integration.agent.kube_lease_api import KubeTestServer, kube_test_server, namespace
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


NAMESPACE = "customer-image"
POD = "usage-agent-image-0"
# Inside the agent container: /tmp is one of its declared writable paths.
KUBECONFIG = "/tmp/kubeconfig"


@contextmanager
def served_kube(namespaces: dict[str, dict[str, Any]]) -> Iterator[KubeTestServer]:
    """The agent tests' Kubernetes API (namespaces and Leases) on loopback, from a thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    served = kube_test_server(namespaces)
    try:
        server = asyncio.run_coroutine_threadsafe(served.__aenter__(), loop).result(timeout=30)
        try:
            yield server
        finally:
            asyncio.run_coroutine_threadsafe(served.__aexit__(None, None, None), loop).result(30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def kubeconfig(url: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": {"server": url}}],
            "users": [{"name": "test", "user": {"token": "test-token"}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
            "current-context": "test",
        }
    )


@dataclass(frozen=True)
class Deployment:
    """What happened when the two images ran together, for the tests to assert on."""

    migrated: str
    ready_from_host: httpx.Response
    ready_inside: str
    openapi: httpx.Response
    api_docs: httpx.Response
    database_owner: str
    agent_run: str
    agent_exit: int
    lease_writes: list[tuple[str, str | None]]
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

    The agent elects itself through a Lease and takes its customer and instance ids from its
    namespace's annotations, both through the ``kubernetes`` client and a kubeconfig, against a
    Kubernetes API on loopback; it reads a simulated customer instance (demo.simulator). Both
    containers share the host's network, as buildah's chroot isolation gives them.
    """
    log = tmp_path_factory.mktemp("images") / "serve.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    annotations = {"usage.billing/customer-id": "cust-image"}
    with (
        Simulator(devices=12, active=5, page_size=5) as simulator,
        served_kube({NAMESPACE: namespace(NAMESPACE, "inst-image", annotations)}) as kube,
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
            openapi = httpx.get(f"{url}/schema/openapi.json", timeout=30)
            api_docs = httpx.get(f"{url}/schema/swagger", timeout=30)
            with Container.of(buildah, agent_image) as agent:
                (agent.root / KUBECONFIG.lstrip("/")).write_text(kubeconfig(kube.url))
                run = agent.run(
                    AGENT,
                    "run",
                    "--once",
                    env={
                        "AGENT_LEADER_ELECTION": "true",
                        "AGENT_NAMESPACE": NAMESPACE,
                        "AGENT_POD_NAME": POD,
                        "AGENT_KUBECONFIG": KUBECONFIG,
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
        lease_writes = list(kube.store.writes)
    return Deployment(
        migrated=migrated,
        ready_from_host=ready_from_host,
        ready_inside=ready_inside,
        openapi=openapi,
        api_docs=api_docs,
        database_owner=owner,
        agent_run=run.stdout + run.stderr,
        agent_exit=run.returncode,
        lease_writes=lease_writes,
        latest=latest,
        collector_written=collector_written,
        agent_written=agent_written,
        agent_write_attempts=attempts,
    )
