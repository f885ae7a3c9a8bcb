"""The agent's own HTTP endpoint: ``/metrics`` from an injected registry, and ``/healthz``.

A small threaded stdlib server: it needs no event loop, so a busy or stuck cycle never makes
Prometheus or the kubelet's probe wait.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from agent.errors import ConfigurationError

HealthCheck = Callable[[], tuple[bool, str]]


class MetricsServer:
    """Serves ``/metrics`` and ``/healthz`` on ``host:port`` from a daemon thread."""

    def __init__(
        self, registry: CollectorRegistry, health: HealthCheck, *, host: str, port: int
    ) -> None:
        def handle(request: BaseHTTPRequestHandler) -> tuple[int, str, bytes]:
            path = request.path.split("?", 1)[0]
            if path == "/metrics":
                return 200, CONTENT_TYPE_LATEST, generate_latest(registry)
            if path in ("/healthz", "/health"):
                ok, reason = health()
                return (200 if ok else 503), "text/plain; charset=utf-8", (reason + "\n").encode()
            return 404, "text/plain; charset=utf-8", b"not found\n"

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, content_type, body = handle(self)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # probes every few seconds would drown the JSON logs

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot listen on {host}:{port} for /metrics and /healthz "
                f"({exc.strerror or exc}): set AGENT_METRICS_PORT to a free port "
                "(or AGENT_METRICS_HOST to an address of this host)"
            ) from exc
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="agent-metrics", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
