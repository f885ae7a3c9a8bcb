"""Request bodies are JSON of a bounded shape, checked before any parser sees them.

Python's parsers fail on a body nested thousands of levels deep (RecursionError) or on a number
of thousands of digits (the int-conversion limit), and those failures surfaced as 500. Every
endpoint with a body, the Stripe webhook included, is held to: ``application/json``, at most
``MAX_DEPTH`` levels of nesting, at most ``MAX_DIGITS`` digits in a number, and the body-size
limit, counted as the body streams in. Routes that take urlencoded forms instead (the console)
opt out with ``opt={BodyShape.FORM_OPT_KEY: True}`` and bound their bodies themselves.
"""

from __future__ import annotations

import re

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, HTTPRequestEvent, Receive, ReceiveMessage, Scope, Send

from collector.errors import BadRequest, BodyTooLarge, UnsupportedMediaType

MAX_DEPTH = 32
MAX_DIGITS = 40
JSON_MEDIA_TYPES = ("application/json", "application/merge-patch+json")
_LONG_DIGITS = re.compile(rb"\d{%d,}" % (MAX_DIGITS + 1))
_BODILESS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


def media_type(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return value.decode("latin-1").split(";", 1)[0].strip().lower()
    return ""


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def check_shape(body: bytes) -> None:
    """400 for JSON nested deeper than ``MAX_DEPTH`` or a number longer than ``MAX_DIGITS``.

    The fast paths are byte counts and one regular expression; only a body that might break a
    limit is scanned character by character (strings may hold brackets and digits freely).
    """
    deep = body.count(b"[") + body.count(b"{") > MAX_DEPTH
    long = _LONG_DIGITS.search(body) is not None
    if not deep and not long:
        return
    depth = 0
    digits = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                in_string = False
            continue
        if 0x30 <= byte <= 0x39:
            digits += 1
            if digits > MAX_DIGITS:
                raise BadRequest(f"a number in the body has more than {MAX_DIGITS} digits")
            continue
        digits = 0
        if byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > MAX_DEPTH:
                raise BadRequest(f"the body is nested more than {MAX_DEPTH} levels deep")
        elif byte in (0x5D, 0x7D):
            depth -= 1


class BodyShape(ASGIMiddleware):
    """Buffers a request body (within ``max_bytes``), checks its type and shape, replays it."""

    scopes = (ScopeType.HTTP,)
    FORM_OPT_KEY = "urlencoded_form_posts"
    """The ``opt`` key of routes that take forms, not JSON; this middleware skips them."""
    exclude_opt_key = FORM_OPT_KEY

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if scope.get("method", "GET") in _BODILESS:
            await next_app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self._max_bytes:
            raise BodyTooLarge(f"the body is larger than {self._max_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await next_app(scope, _replay(b"".join(chunks), message, receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_bytes:
                raise BodyTooLarge(f"the body is larger than {self._max_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body:
            kind = media_type(scope)
            if kind not in JSON_MEDIA_TYPES:
                raise UnsupportedMediaType(
                    f"content type must be application/json, got {kind or 'none'}",
                    field="content-type",
                )
            check_shape(body)
        await next_app(scope, _replay(body, None, receive), send)


def _replay(body: bytes, then: ReceiveMessage | None, rest: Receive) -> Receive:
    """The buffered body as one message, then ``then`` (a disconnect) or the connection's own."""
    sent = False

    async def replay() -> ReceiveMessage:
        nonlocal sent
        if not sent:
            sent = True
            message: HTTPRequestEvent = {"type": "http.request", "body": body, "more_body": False}
            return message
        if then is not None:
            return then
        return await rest()

    return replay
