"""A kmock Kubernetes API server on loopback that Helm (helm-sdkpy) can install charts into.

kmock's emulator serves discovery and stores objects; Helm needs four more things from it:

- the core group's discovery document names its groupVersion ``v1``; kmock answers ``/v1``,
  which makes client-go's RESTMapper miss every core kind (ConfigMap, Secret, Service...);
- kinds that are not built in, e.g. ``monitoring.coreos.com/v1`` ServiceMonitor, declared;
- ``/openapi/v3``: Helm always validates hook manifests, and client-go skips client-side
  schema validation only when OpenAPI v3 says the server supports ``fieldValidation``;
- Jobs that complete: Helm waits for a hook Job to finish, so a created Job is stored with a
  ``Complete`` condition.

The server runs on its own event loop in a daemon thread, so synchronous tests (and a Helm
worker process) can talk to it while it serves.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import gzip
import importlib.resources
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import attrs
import kmock
import yaml

# Kinds the charts use that are not in kmock's bundled set of built-in resources.
EXTRA_RESOURCES: dict[str, kmock.ResourceInfo] = {
    "monitoring.coreos.com/v1/servicemonitors": kmock.ResourceInfo(
        kind="ServiceMonitor",
        singular="servicemonitor",
        namespaced=True,
        verbs={"create", "delete", "get", "list", "patch", "update", "watch"},
    ),
}


def _openapi_path_key(resource: kmock.resource) -> str:
    if resource.group:
        return f"apis/{resource.group}/{resource.version}"
    return f"api/{resource.version}"


@attrs.define(kw_only=True)
class HelmReadyEmulator(kmock.KubernetesEmulator):
    """kmock's stateful emulator plus the discovery, OpenAPI and Job behaviour Helm relies on."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # kmock's load_bundled() uses a deprecated importlib API (warnings are errors here).
        bundled = importlib.resources.files("kmock._internal") / "resources.json.gz"
        self.resources.load_data(gzip.decompress(bundled.read_bytes()))
        for key, info in EXTRA_RESOURCES.items():
            self.resources[key] = info
        self["get /openapi/v3"] << self._serve_openapi_root
        self["get /openapi/v3/*"] << self._serve_openapi_group_version

    async def _serve_version(self, request: kmock.Request) -> Any:
        payload = await super()._serve_version(request)
        if isinstance(payload, dict) and payload.get("groupVersion") == "/v1":
            payload["groupVersion"] = "v1"
        return payload

    async def _serve_list(self, request: kmock.Request) -> Any:
        # client-go decodes lists as unstructured, which needs apiVersion and kind.
        payload = await super()._serve_list(request)
        resource = request.resource
        if isinstance(payload, dict) and resource is not None:
            kind = self.resources[resource].kind or resource.plural.capitalize()
            group = f"{resource.group}/" if resource.group else ""
            payload.setdefault("apiVersion", f"{group}{resource.version}")
            payload.setdefault("kind", f"{kind}List")
        return payload

    async def _serve_create(self, request: kmock.Request) -> Any:
        resource = request.resource
        if resource is not None and (resource.group, resource.plural) == ("batch", "jobs"):
            metadata = request.data.get("metadata", {})
            key = (resource, request.namespace or metadata.get("namespace"), metadata.get("name"))
            now = datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            async with self._lock:
                self.objects[key].patch(
                    {
                        "status": {
                            "succeeded": 1,
                            "startTime": now,
                            "completionTime": now,
                            "conditions": [
                                {"type": "Complete", "status": "True", "lastTransitionTime": now}
                            ],
                        }
                    }
                )
        return await super()._serve_create(request)

    def _served_resources(self) -> list[kmock.resource]:
        return [
            res
            for res in self._get_resources()
            if res.plural and res.version and self.resources[res].kind is not None
        ]

    async def _serve_openapi_root(self, request: kmock.Request) -> Any:
        keys = {_openapi_path_key(res) for res in self._served_resources()}
        return {"paths": {key: {"serverRelativeURL": f"/openapi/v3/{key}"} for key in keys}}

    async def _serve_openapi_group_version(self, request: kmock.Request) -> Any:
        key = request.url.path.removeprefix("/openapi/v3/")
        paths: dict[str, Any] = {}
        for res in self._served_resources():
            if _openapi_path_key(res) != key:
                continue
            info = self.resources[res]
            scope = "/namespaces/{namespace}" if info.namespaced else ""
            paths[f"/{key}{scope}/{res.plural}/{{name}}"] = {
                "patch": {
                    "operationId": f"patch{info.kind}",
                    "x-kubernetes-group-version-kind": {
                        "group": res.group,
                        "version": res.version,
                        "kind": info.kind,
                    },
                    "parameters": [
                        {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}
                    ],
                    "responses": {"200": {"description": "OK"}},
                }
            }
        return {"openapi": "3.0.0", "info": {"title": "kmock", "version": "v1"}, "paths": paths}


class KubeApiServer:
    """A :class:`HelmReadyEmulator` served on 127.0.0.1 from a background thread."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._stack: Any = None
        self.emulator: HelmReadyEmulator | None = None
        self.url = ""

    def _call[T](self, coro: Coroutine[Any, Any, T]) -> T:
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout=30)

    def start(self) -> KubeApiServer:
        self._thread.start()
        self.url = self._call(self._start())
        return self

    async def _start(self) -> str:
        import contextlib

        self._stack = contextlib.AsyncExitStack()
        self.emulator = await self._stack.enter_async_context(HelmReadyEmulator())
        server = await self._stack.enter_async_context(kmock.Server(self.emulator))
        return str(server.url).rstrip("/")

    def stop(self) -> None:
        if self._stack is not None:
            self._call(self._stack.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def reset(
        self, namespaces: tuple[str, ...] = (), objects: tuple[dict[str, Any], ...] = ()
    ) -> None:
        """Forget every stored object, then create ``namespaces`` (agents GET their own).

        ``objects`` are namespaced core (v1) objects that exist before, e.g. from an earlier
        install.
        """
        self._call(self._reset(namespaces, objects))

    async def _reset(
        self, namespaces: tuple[str, ...], objects: tuple[dict[str, Any], ...] = ()
    ) -> None:
        assert self.emulator is not None
        async with self.emulator._lock:
            self.emulator.objects.clear()
            for name in namespaces:
                self.emulator.objects["v1/namespaces", None, name] = {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": name, "uid": f"uid-{name}"},
                }
            for obj in objects:
                meta = obj["metadata"]
                resource = f"v1/{obj['kind'].lower()}s"
                self.emulator.objects[resource, meta["namespace"], meta["name"]] = obj

    def stored(self) -> list[dict[str, Any]]:
        """Every live object Helm created, as plain dicts."""
        return self._call(self._stored())

    async def _stored(self) -> list[dict[str, Any]]:
        assert self.emulator is not None
        async with self.emulator._lock:
            return [dict(obj.raw) for _, obj in self.emulator.objects.items() if not obj.deleted]

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        """A kubeconfig whose current context points at this server."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
            "users": [{"name": "kmock", "user": {"token": "kmock-token"}}],
            "contexts": [
                {
                    "name": "kmock",
                    "context": {"cluster": "kmock", "user": "kmock", "namespace": namespace},
                }
            ],
            "current-context": "kmock",
        }
        path.write_text(yaml.safe_dump(config))
        return path
