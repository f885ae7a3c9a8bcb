"""A Kubernetes API test server (kmock) with the agent's namespace and a Lease store.

kmock's emulator has no optimistic concurrency and maps no route to PUT, so Leases are served
by small handlers here: GET, POST (create) and PUT (replace) with ``resourceVersion`` checks,
answering 409 on a stale write as the real API server does.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import attrs
import kmock
from kubernetes import client as k8s

from agent.adapters.kube import KubeApi

LEASES = "/apis/coordination.k8s.io/v1/namespaces/*/leases"


@attrs.frozen
class Conflict(kmock.KubernetesError):
    status: int = 409
    reason: str = "Conflict"
    message: str = "the object has been modified; please apply your changes to the latest version"


@dataclass
class LeaseStore:
    namespaces: dict[str, dict[str, Any]] = field(default_factory=dict)
    leases: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    writes: list[tuple[str, str | None]] = field(default_factory=list)

    async def get_namespace(self, request: kmock.Request) -> Any:
        name = request.url.path.rsplit("/", 1)[1]
        if name not in self.namespaces:
            raise kmock.KubernetesObjectNotFoundError()
        return self.namespaces[name]

    def _key(self, request: kmock.Request, name: str | None = None) -> tuple[str, str]:
        parts = request.url.path.split("/")
        namespace = parts[parts.index("namespaces") + 1]
        return namespace, name or parts[-1]

    async def get(self, request: kmock.Request) -> Any:
        key = self._key(request)
        if key not in self.leases:
            raise kmock.KubernetesObjectNotFoundError()
        return copy.deepcopy(self.leases[key])

    async def create(self, request: kmock.Request) -> Any:
        body = dict(request.data)
        key = self._key(request, body["metadata"]["name"])
        if key in self.leases:
            raise Conflict()
        body["metadata"]["resourceVersion"] = "1"
        self.leases[key] = body
        self.writes.append(("create", body["spec"].get("holderIdentity")))
        return copy.deepcopy(body)

    async def replace(self, request: kmock.Request) -> Any:
        body = dict(request.data)
        key = self._key(request)
        current = self.leases.get(key)
        if current is None:
            raise kmock.KubernetesObjectNotFoundError()
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise Conflict()
        body["metadata"]["resourceVersion"] = str(int(current["metadata"]["resourceVersion"]) + 1)
        self.leases[key] = body
        self.writes.append(("replace", body["spec"].get("holderIdentity")))
        return copy.deepcopy(body)


@dataclass
class KubeTestServer:
    url: str
    store: LeaseStore

    def api(self) -> KubeApi:
        """A client of the agent's kind pointed at this server."""
        configuration = k8s.Configuration(host=self.url)
        return KubeApi(k8s.ApiClient(configuration), timeout=timedelta(seconds=5))


@asynccontextmanager
async def kube_test_server(namespaces: dict[str, dict[str, Any]]) -> AsyncIterator[KubeTestServer]:
    """Serve ``namespaces`` (name -> Namespace object) and Leases on a loopback port."""
    store = LeaseStore(namespaces=namespaces)
    scaffold = kmock.KubernetesScaffold()
    scaffold["get /api/v1/namespaces/*"] << store.get_namespace
    scaffold[f"get {LEASES}/*"] << store.get
    scaffold[f"post {LEASES}"] << store.create
    scaffold[f"put {LEASES}/*"] << store.replace
    async with scaffold, kmock.Server(scaffold) as server:
        yield KubeTestServer(str(server.url).rstrip("/"), store)


def namespace(name: str, uid: str, annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "uid": uid, "annotations": annotations},
    }
