"""The Kubernetes API through the official ``kubernetes`` client: the namespace and one Lease.

Responses are read as raw JSON (``_preload_content=False``) rather than the client's models, so
the MicroTime fields of a Lease round-trip exactly as the API server wrote them. The client is
synchronous; every call runs in a worker thread with a request timeout. The ``kubernetes``
package is imported only when a client is built: its models weigh tens of MB of RSS, which an
agent with settings-only identity and no leader election never needs.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import urllib3

from agent.errors import KubeApiError, KubeConflict, KubeRefused


@dataclass(frozen=True)
class NamespaceInfo:
    """What the agent reads from its own namespace for its identity."""

    name: str
    uid: str | None
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LeaseRecord:
    """The parts of a ``coordination.k8s.io/v1`` Lease that leader election uses."""

    name: str
    holder: str | None = None
    duration_seconds: int | None = None
    acquire_time: str | None = None
    renew_time: str | None = None
    transitions: int = 0
    annotations: dict[str, str] = field(default_factory=dict)
    resource_version: str | None = None

    def body(self, namespace: str) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "name": self.name,
            "namespace": namespace,
            "annotations": dict(self.annotations),
        }
        if self.resource_version is not None:
            metadata["resourceVersion"] = self.resource_version
        spec: dict[str, Any] = {"leaseTransitions": self.transitions}
        for key, value in (
            ("holderIdentity", self.holder),
            ("leaseDurationSeconds", self.duration_seconds),
            ("acquireTime", self.acquire_time),
            ("renewTime", self.renew_time),
        ):
            if value is not None:
                spec[key] = value
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": spec,
        }

    @classmethod
    def parse(cls, raw: Any) -> LeaseRecord:
        try:
            metadata = raw.get("metadata") or {}
            spec = raw.get("spec") or {}
            duration = spec.get("leaseDurationSeconds")
            return cls(
                name=str(metadata["name"]),
                holder=spec.get("holderIdentity") or None,
                duration_seconds=None if duration is None else int(duration),
                acquire_time=spec.get("acquireTime"),
                renew_time=spec.get("renewTime"),
                transitions=int(spec.get("leaseTransitions") or 0),
                annotations={
                    str(k): str(v) for k, v in (metadata.get("annotations") or {}).items()
                },
                resource_version=metadata.get("resourceVersion"),
            )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise KubeApiError(f"unexpected Lease shape: {exc}") from exc


class KubeApi:
    """Reads the agent's namespace and gets, creates and replaces its Lease."""

    def __init__(self, api_client: Any, *, timeout: timedelta) -> None:
        from kubernetes import client as k8s

        self._core = k8s.CoreV1Api(api_client)
        self._coordination = k8s.CoordinationV1Api(api_client)
        self._timeout = timeout.total_seconds()

    def _call(self, what: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            response = method(
                *args, _preload_content=False, _request_timeout=self._timeout, **kwargs
            )
            return json.loads(response.data)
        except ApiException as exc:
            status = int(exc.status or 0)
            if status == 409:
                raise KubeConflict(f"{what}: changed by someone else (HTTP 409)") from exc
            if status in (400, 401, 403, 404, 422):
                raise KubeRefused(f"{what}: HTTP {status} {exc.reason}", status=status) from exc
            raise KubeApiError(f"{what}: HTTP {status} {exc.reason}", status=status) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeApiError(f"{what}: cannot reach the Kubernetes API: {exc}") from exc
        except ValueError as exc:
            raise KubeApiError(f"{what}: the answer is not JSON") from exc

    async def read_namespace(self, name: str) -> NamespaceInfo:
        raw = await asyncio.to_thread(
            self._call, f"get namespace {name}", self._core.read_namespace, name
        )
        if not isinstance(raw, dict):
            raise KubeApiError(f"get namespace {name}: unexpected answer")
        metadata = raw.get("metadata") or {}
        annotations = metadata.get("annotations") or {}
        return NamespaceInfo(
            name=name,
            uid=metadata.get("uid") or None,
            annotations={str(k): str(v) for k, v in annotations.items()},
        )

    async def get_lease(self, namespace: str, name: str) -> LeaseRecord | None:
        """The Lease, or ``None`` when it does not exist yet."""
        try:
            raw = await asyncio.to_thread(
                self._call,
                f"get lease {namespace}/{name}",
                self._coordination.read_namespaced_lease,
                name,
                namespace,
            )
        except KubeRefused as exc:
            if exc.status == 404:
                return None
            raise
        return LeaseRecord.parse(raw)

    async def create_lease(self, namespace: str, lease: LeaseRecord) -> LeaseRecord:
        raw = await asyncio.to_thread(
            self._call,
            f"create lease {namespace}/{lease.name}",
            self._coordination.create_namespaced_lease,
            namespace,
            lease.body(namespace),
        )
        return LeaseRecord.parse(raw)

    async def replace_lease(self, namespace: str, lease: LeaseRecord) -> LeaseRecord:
        """Replace the Lease; its ``resource_version`` makes a concurrent change a conflict."""
        raw = await asyncio.to_thread(
            self._call,
            f"update lease {namespace}/{lease.name}",
            self._coordination.replace_namespaced_lease,
            lease.name,
            namespace,
            lease.body(namespace),
        )
        return LeaseRecord.parse(raw)
