"""Render and lint charts with the real Helm engine (helm-sdkpy) against the kmock API server.

helm-sdkpy has no template mode: an install with ``HELM_DRIVER=memory`` renders the chart, and
the release's ``manifest`` (plus its hooks) is the rendered output. Helm's Go runtime reads its
environment from the process start-up block, so ``os.environ`` changes made by Python never
reach it; rendering therefore runs in one long-lived worker process started with
``HELM_DRIVER=memory``. The worker is this module (``python -m tests.support.helm``) and
speaks JSON lines on stdin/stdout.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.kube_api import KubeApiServer

REPO_ROOT = Path(__file__).resolve().parents[2]
CHARTS = REPO_ROOT / "charts"
_REPLY = "@@helm-worker@@ "


class HelmError(Exception):
    """Helm refused to install or lint; the message is Helm's own."""


@dataclass
class Rendered:
    """The objects one install created: regular manifests and hooks, in Helm's order."""

    manifests: list[dict[str, Any]]
    hooks: list[dict[str, Any]] = field(default_factory=list)
    notes: str = ""

    @property
    def all(self) -> list[dict[str, Any]]:
        return self.hooks + self.manifests

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [doc for doc in self.all if doc.get("kind") == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.of_kind(kind)
        assert len(found) == 1, f"expected one {kind}, got {len(found)}"
        return found[0]


def _documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _forget_requests(kube_api: KubeApiServer) -> None:
    """Drop kmock's log of served requests, which no chart test reads.

    kmock keeps every request for assertions, and serving one costs time in proportion to that
    log: over a session of a few hundred installs each render went from about 1 s to 20 s.
    Called between installs, when the Helm worker sends nothing.
    """
    if kube_api.emulator is not None:
        kube_api.emulator._requests.clear()


class Helm:
    """A Helm worker process bound to one kmock API server; one request at a time."""

    def __init__(self, kube_api: KubeApiServer, workdir: Path) -> None:
        self._kube_api = kube_api
        kubeconfig = kube_api.write_kubeconfig(workdir / "kubeconfig")
        env = {
            **os.environ,
            "HELM_DRIVER": "memory",
            "KUBECONFIG": str(kubeconfig),
            "HELM_CACHE_HOME": str(workdir / "cache"),
            "HELM_CONFIG_HOME": str(workdir / "config"),
            "HELM_DATA_HOME": str(workdir / "data"),
        }
        self._kubeconfig = kubeconfig
        self._lock = threading.Lock()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.helm"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        for line in self._proc.stdout:
            if line.startswith(_REPLY):
                reply: dict[str, Any] = json.loads(line[len(_REPLY) :])
                if "error" in reply:
                    raise HelmError(reply["error"])
                return reply
        raise HelmError(f"the Helm worker exited with code {self._proc.wait()}")

    def render(
        self,
        chart: str | Path,
        values: dict[str, Any] | None = None,
        namespace: str = "default",
        release: str | None = None,
        existing: tuple[dict[str, Any], ...] = (),
    ) -> Rendered:
        """Install ``chart`` into a fresh kmock and return what Helm rendered and applied.

        ``existing`` are v1 objects already in the cluster, as an earlier release left them.
        """
        chart_path = Path(chart) if Path(chart).is_absolute() else CHARTS / chart
        with self._lock:
            self._kube_api.reset(namespaces=(namespace,), objects=existing)
            _forget_requests(self._kube_api)
            reply = self._ask(
                {
                    "op": "install",
                    "chart": str(chart_path),
                    "values": values or {},
                    "namespace": namespace,
                    "release": release or chart_path.name,
                    "kubeconfig": str(self._kubeconfig),
                }
            )
        return Rendered(
            manifests=_documents(reply.get("manifest", "")),
            hooks=[doc for hook in reply.get("hooks") or [] for doc in _documents(hook)],
            notes=reply.get("notes", ""),
        )

    def lint(self, chart: str | Path) -> dict[str, Any]:
        """Helm's lint result for ``chart``; raises :class:`HelmError` when lint fails."""
        chart_path = Path(chart) if Path(chart).is_absolute() else CHARTS / chart
        with self._lock:
            return self._ask(
                {"op": "lint", "chart": str(chart_path), "kubeconfig": str(self._kubeconfig)}
            )


def _hook_manifests(result: dict[str, Any]) -> list[str]:
    hooks = result.get("hooks") or []
    return [hook["manifest"] if isinstance(hook, dict) else str(hook) for hook in hooks]


async def _serve_one(request: dict[str, Any]) -> dict[str, Any]:
    import helm_sdkpy

    if request["op"] == "install":
        config = helm_sdkpy.Configuration(
            namespace=request["namespace"], kubeconfig=request["kubeconfig"]
        )
        result = await helm_sdkpy.Install(config).run(
            request["release"], request["chart"], values=request["values"], wait=False, timeout=60
        )
        info = result.get("info") or {}
        return {
            "manifest": result.get("manifest", ""),
            "hooks": _hook_manifests(result),
            "notes": info.get("notes", "") if isinstance(info, dict) else "",
            "raw_keys": sorted(result),
        }
    if request["op"] == "lint":
        config = helm_sdkpy.Configuration(namespace="default", kubeconfig=request["kubeconfig"])
        return {"result": await helm_sdkpy.Lint(config).run(request["chart"])}
    raise ValueError(f"unknown op {request['op']!r}")


def _worker() -> None:
    # Helm may print warnings on stdout; replies carry a marker so they can be told apart.
    for line in sys.stdin:
        request = json.loads(line)
        try:
            reply = asyncio.run(_serve_one(request))
        except Exception as exc:
            reply = {"error": str(exc) or type(exc).__name__}
        sys.stdout.write(_REPLY + json.dumps(reply) + "\n")
        sys.stdout.flush()


def start(kube_api: KubeApiServer) -> tuple[Helm, tempfile.TemporaryDirectory[str]]:
    """A Helm worker for ``kube_api`` and the temporary directory it owns."""
    workdir = tempfile.TemporaryDirectory(prefix="helm-worker-")
    return Helm(kube_api, Path(workdir.name)), workdir


if __name__ == "__main__":
    _worker()
