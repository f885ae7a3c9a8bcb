"""Minimal request/response types and a path router for the plain ASGI app."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from collector.stripe_sandbox import errors, forms

if TYPE_CHECKING:
    from collector.stripe_sandbox.state import Store

# Stripe removed legacy usage records in this version; older pinned versions still have them.
BASIL = "2025-03-31"


@dataclass
class Request:
    """One decoded API call as a handler sees it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    query: str
    params: dict[str, Any] = field(default_factory=dict)
    path_params: dict[str, str] = field(default_factory=dict)

    @property
    def stripe_version(self) -> str | None:
        return self.headers.get("stripe-version")

    @property
    def is_legacy_version(self) -> bool:
        """True when the pinned version predates 2025-03-31.basil; no header means current."""
        version = self.stripe_version
        return version is not None and version[:10] < BASIL

    @property
    def expand(self) -> list[str]:
        return forms.expand_list(self.params)

    @property
    def bearer(self) -> str | None:
        auth = self.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip() or None
        if auth.lower().startswith("basic "):
            # curl -u sk_test_...: is how Stripe's docs call the API
            try:
                user = base64.b64decode(auth[6:].strip()).decode().split(":", 1)[0]
            except ValueError:
                return None
            return user or None
        return None

    def decode_params(self) -> None:
        """Fill ``params`` from the query string (GET/DELETE), form body (v1) or JSON (v2)."""
        params = forms.decode(self.query) if self.query else {}
        if self.body:
            content_type = self.headers.get("content-type", "")
            if content_type.startswith("application/json"):
                try:
                    loaded = json.loads(self.body)
                except ValueError as exc:
                    raise errors.invalid("Invalid JSON body.") from exc
                if not isinstance(loaded, dict):
                    raise errors.invalid("The JSON body must be an object.")
                params.update(loaded)
            else:
                params.update(forms.decode(self.body.decode("utf-8", "replace")))
        self.params = params


@dataclass
class Response:
    """A JSON answer."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        return json.dumps(self.body, separators=(",", ":")).encode()


Handler = Callable[["Store", Request], Any]


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler


class Router:
    """Routes ``METHOD /path/{name}`` patterns to handlers; path names become ``path_params``."""

    def __init__(self) -> None:
        self._routes: list[Route] = []

    def add(self, method: str, template: str, handler: Handler) -> None:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
        self._routes.append(Route(method.upper(), re.compile(f"^{regex}$"), handler))

    def include(self, other: Router) -> None:
        self._routes.extend(other._routes)

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]] | None:
        for route in self._routes:
            if route.method != method.upper():
                continue
            match = route.pattern.match(path)
            if match:
                return route.handler, match.groupdict()
        return None
