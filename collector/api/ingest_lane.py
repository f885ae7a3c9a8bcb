"""A short lane for the one request agents send all day: a valid report with an ingest token.

``POST /api/usage/report`` through Litestar costs more in routing, dependency injection, guards
and response building than storing the report does. The lane sits in front of Litestar's
handler and takes a request only when it can tell, before anything is stored, that Litestar
would accept it: a bearer ingest token for the report's customer, a JSON body that arrived
within the deadline and the size limit, within the shape limits, in the canonical shape the
fast decoder reads, that passes every check. Any other request, with the body read so far
replayed, goes to Litestar untouched, so every refusal and its answer come from one place.

The lane checks admission last; a refused admission is handed on as ``PRE_ADMITTED`` so the
authentication middleware answers 429 without taking a second token. Once the report is
stored, its errors (a conflict, the database) are answered by the app's exception handler.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from litestar import Litestar, Request
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send

from collector.api.auth import PRE_ADMITTED
from collector.api.body_shape import JSON_MEDIA_TYPES, check_shape, media_type
from collector.api.ingest_answer import answer_body
from collector.api.limits import late_body
from collector.errors import CollectorError
from collector.services.auth import Authenticator
from collector.services.ingest import IngestService
from collector.services.principals import Kind
from collector.services.token_buckets import RequestLimits

PATH = "/api/usage/report"
_JSON = b"application/json"
ErrorHandler = Callable[[Request[Any, Any, Any], Exception], Any]


class IngestLane:
    """ASGI: the lane for accepted reports in front of ``app``'s own handler."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        litestar: Litestar,
        ingest: IngestService,
        authenticator: Authenticator,
        limits: RequestLimits,
        body_timeout: float,
        max_body_bytes: int,
        on_error: ErrorHandler,
    ) -> None:
        self._app = app
        self._litestar = litestar
        self._ingest = ingest
        self._authenticator = authenticator
        self._limits = limits
        self._timeout = body_timeout
        self._max = max_body_bytes
        self._on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != ScopeType.HTTP
            or scope["path"] != PATH
            or scope.get("method") != "POST"
            or scope["query_string"]
        ):
            await self._app(scope, receive, send)
            return
        authorization = None
        for name, value in scope["headers"]:
            # The first of a repeated header counts, as everywhere else in the app.
            if name == b"authorization" and authorization is None:
                authorization = value
            elif name == b"content-length" and (not value.isdigit() or int(value) > self._max):
                await self._app(scope, receive, send)
                return
        if authorization is None or media_type(scope) not in JSON_MEDIA_TYPES:
            await self._app(scope, receive, send)
            return
        try:
            principal = await self._authenticator.authenticate(authorization.decode("latin-1"))
        except CollectorError:
            principal = None
        if principal is None or (principal.kind is not Kind.INGEST and not principal.unrestricted):
            await self._app(scope, receive, send)
            return
        try:
            received, body = await self._read(receive)
        except _Late as late:
            # Litestar admits before it reads: a limited token hears 429, not 408.
            if principal.unrestricted or not await self._refused(scope, principal.credential_id):
                await self._error(scope, receive, send, late_body(self._timeout))
            else:
                await self._app(scope, _replaying(late.received, receive), send)
            return
        report = None
        if body is not None:
            try:
                check_shape(body)
                report = self._ingest.decode_canonical(body)
                if report is not None:
                    principal.check_customer(report.customer_id)
            except CollectorError:
                report = None
        if report is None:
            await self._app(scope, _replaying(received, receive), send)
            return
        if not principal.unrestricted and await self._refused(scope, principal.credential_id):
            await self._app(scope, _replaying(received, receive), send)
            return
        scope["auth"] = scope["user"] = principal
        try:
            result = await self._ingest.store(report)
        except Exception as exc:
            await self._error(scope, receive, send, exc)
            return
        body = answer_body(result)
        await send(
            {
                "type": "http.response.start",
                "status": 201 if result.created else 200,
                "headers": [
                    (b"content-type", _JSON),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def _refused(self, scope: Scope, credential_id: str) -> bool:
        """Admit the request; a refusal is left in the scope for the middleware to answer."""
        wait = await self._limits.admit(credential_id)
        if wait > 0:
            scope[PRE_ADMITTED] = wait  # type: ignore[literal-required]
        return wait > 0

    async def _read(self, receive: Receive) -> tuple[list[ReceiveMessage], bytes | None]:
        """The messages read, and the body if it arrived whole and within the limit.

        Raises ``_Late`` when it did not arrive in time.
        """
        received: list[ReceiveMessage] = []
        chunks: list[bytes] = []
        size = 0
        deadline = asyncio.get_running_loop().time() + self._timeout
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise _Late(received) from None
            received.append(message)
            if message["type"] != "http.request":
                return received, None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max:
                return received, None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return received, chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _error(self, scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
        request: Request[Any, Any, Any] = Request(scope)
        response = self._on_error(request, exc)
        asgi = response.to_asgi_response(
            app=None, request=request, type_encoders=self._litestar.type_encoders
        )
        await asgi(scope, receive, send)


class _Late(Exception):
    """The body missed its deadline; ``received`` holds what came before."""

    def __init__(self, received: list[ReceiveMessage]) -> None:
        super().__init__("late body")
        self.received = received


def _replaying(received: list[ReceiveMessage], receive: Receive) -> Receive:
    """``receive``, giving back first the messages the lane already took from it."""
    pending = list(received)

    async def replay() -> ReceiveMessage:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
