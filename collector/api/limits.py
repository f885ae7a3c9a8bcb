"""Request-body deadline: a client that trickles or stalls its body gets 408, not a worker."""

from __future__ import annotations

import asyncio

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send

from collector.errors import RequestTimeout


def late_body(timeout: float) -> RequestTimeout:
    """The 408 for a body that did not arrive within ``timeout`` seconds."""
    return RequestTimeout(f"the request body did not arrive within {timeout:g} s")


class BodyDeadline(ASGIMiddleware):
    """The whole body must arrive within ``timeout`` seconds of the request's start.

    Size is limited separately (``request_max_body_size``, counted as the body streams in, so a
    missing or lying Content-Length does not help); this bounds how long a connection can hold
    a handler while it sends.
    """

    scopes = (ScopeType.HTTP,)

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        body_done = False

        async def receive_in_time() -> ReceiveMessage:
            nonlocal body_done
            if body_done:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise late_body(self._timeout) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        await next_app(scope, receive_in_time, send)
