"""One kmock API server and one Helm worker for the whole session: Helm's start-up is the cost."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import kmock
import pytest

from tests.support import binaries
from tests.support.helm import Helm, start
from tests.support.kube_api import KubeApiServer

# The collector chart's optional PrometheusRule: a kind kmock must know for Helm to map it.
PROMETHEUS_RULES = kmock.ResourceInfo(
    kind="PrometheusRule",
    singular="prometheusrule",
    namespaced=True,
    verbs={"create", "delete", "get", "list", "patch", "update", "watch"},
)


@pytest.fixture(scope="session")
def kube_api() -> Iterator[KubeApiServer]:
    server = KubeApiServer().start()
    assert server.emulator is not None
    server.emulator.resources["monitoring.coreos.com/v1/prometheusrules"] = PROMETHEUS_RULES
    yield server
    server.stop()


@pytest.fixture(scope="session")
def helm(kube_api: KubeApiServer) -> Iterator[Helm]:
    if importlib.util.find_spec("helm_sdkpy") is None:
        binaries.missing("helm-sdkpy", "pip install helm-sdkpy")
    worker, workdir = start(kube_api)
    yield worker
    worker.close()
    workdir.cleanup()
