"""Running the sandbox under uvicorn: blocking ``serve`` and a background-thread server."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from collector.stripe_sandbox.app import DROP_EXTENSION, SandboxApp
from collector.stripe_sandbox.keys import DEFAULT_API_KEY


class DroppingH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus a scope extension that aborts the connection.

    ASGI has no way to close a socket without answering; dropped-connection faults need one.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        inner = self.app
        protocol = self

        async def with_drop(scope: Any, receive: Any, send: Any) -> None:
            if scope.get("type") == "http":
                extensions = dict(scope.get("extensions") or {})
                extensions[DROP_EXTENSION] = protocol._abort
                scope["extensions"] = extensions
            await inner(scope, receive, send)

        self.app = with_drop

    def _abort(self) -> None:
        transport = getattr(self, "transport", None)
        if transport is not None:
            transport.abort()


def config(app: SandboxApp, host: str, port: int, log_level: str = "warning") -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=DroppingH11Protocol,
        lifespan="on",
        log_level=log_level,
        access_log=False,
    )


class SandboxServer:
    """The sandbox served on ``host:port`` from a daemon thread, for tests and demos."""

    def __init__(self, app: SandboxApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server = uvicorn.Server(config(app, host, port))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> SandboxServer:
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve()), name="stripe-sandbox", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the Stripe sandbox did not start on {self.url}")
            time.sleep(0.01)
        if self.port == 0:
            self.port = int(self._server.servers[0].sockets[0].getsockname()[1])
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    host: str,
    port: int,
    *,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    seed: int | None = None,
    api_key: str = DEFAULT_API_KEY,
) -> None:
    """Run the sandbox until interrupted (blocking), with the real clock.

    It answers only ``api_key``; the key is printed, since a sandbox key is no secret and the
    caller (``make demo``, a developer) has to configure the collector with it.
    """
    app = SandboxApp(
        webhook_url=webhook_url, webhook_secret=webhook_secret, seed=seed, api_key=api_key
    )
    print(f"Stripe sandbox API key: {api_key} (any other key gets Stripe's 401)", flush=True)
    uvicorn.Server(config(app, host, port, log_level="info")).run()
