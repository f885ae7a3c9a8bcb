"""Authentication middleware and the guards that decide who may call which endpoint.

Guards for route handlers (``guards=[...]``):

- ``ingest_only``: an ingest token; the handler must still call ``authorize_customer`` with the
  customer the request acts for (the report's ``customer_id``).
- ``viewer``, ``editor``, ``admin``: an operator key whose role includes that role
  (viewer < editor < admin). A key limited to one customer is refused (403) for any other
  ``customer_id`` in the path or query, and for endpoints that span every customer.
- ``opt={PUBLIC: True}``: no credential at all (health, /metrics, /schema, and the Stripe
  webhook, which its signature authenticates).

A handler with none of these is admin-only: the app-wide ``fail_closed`` guard sees to it, so a
new endpoint is never open by accident. ``authorize_customer(connection, customer_id)`` checks a
customer the guards cannot see (one in a body).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from collector.errors import BadRequest, Forbidden, RateLimited, Unauthorized
from collector.services.auth import Authenticator, bearer_secret
from collector.services.credentials import KEY_PREFIX, TOKEN_PREFIX, hash_secret
from collector.services.principals import Kind, Principal, Role
from collector.services.token_buckets import RequestLimits

log = structlog.get_logger("collector.auth")
PUBLIC = "public"
PUBLIC_PATH_PREFIXES = ("/schema",)
PRE_ADMITTED = "collector.pre_admitted"
"""Scope key: the wait an earlier admission of this request returned (see ``ingest_lane``)."""
Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], None]
AsyncGuard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]


def is_public(handler: BaseRouteHandler, path: str) -> bool:
    """Anyone may call it: opted out with ``opt={PUBLIC: True}``, the docs, or a CORS preflight."""
    if handler.opt.get(PUBLIC) or path.startswith(PUBLIC_PATH_PREFIXES):
        return True
    methods = getattr(handler, "http_methods", None)
    return methods is not None and set(methods) == {"OPTIONS"}


def presented(authorization: str | None) -> dict[str, str]:
    """What a refused request presented, safe to log: never the secret.

    The kind of credential by its prefix, and the first 12 hex digits of the secret's SHA-256,
    which are the start of its ``credentials.secret_hash`` when the collector issued it.
    """
    try:
        secret = bearer_secret(authorization)
    except Unauthorized:
        return {"credential": "malformed" if authorization else "none"}
    kind = (
        "ingest_token"
        if secret.startswith(TOKEN_PREFIX)
        else "operator_key"
        if secret.startswith(KEY_PREFIX)
        else "unknown"
    )
    return {"credential": kind, "secret_sha256_prefix": hash_secret(secret)[:12]}


def log_refused(scope: Scope, error: Unauthorized | Forbidden, **credential: Any) -> None:
    """``auth_refused``: a 401 or a 403, with the path and why, never the secret or the query."""
    log.warning(
        "auth_refused",
        status=error.status_code,
        method=scope.get("method"),
        path=scope.get("path"),
        reason=error.detail,
        **credential,
    )


_KIND_NAMES: dict[Kind | None, str] = {Kind.INGEST: "ingest_token", Kind.OPERATOR: "operator_key"}


def _refused_principal(scope: Scope, error: Unauthorized | Forbidden) -> None:
    principal = scope.get("auth")
    if isinstance(principal, Principal):
        log_refused(
            scope,
            error,
            credential_id=principal.credential_id,
            credential=_KIND_NAMES.get(principal.kind, "none"),
            customer_id=principal.customer_id,
        )
    else:
        log_refused(scope, error)


def _logged(guard: Guard) -> AsyncGuard:
    """``guard``, logging each refusal it raises as ``auth_refused``.

    A coroutine function: Litestar runs a plain function guard in a worker thread, and that
    hand-off cost more than anything else in an ingest request. The checks never block.
    """

    @functools.wraps(guard)
    async def logged(
        connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
    ) -> None:
        try:
            guard(connection, handler)
        except (Unauthorized, Forbidden) as exc:
            _refused_principal(connection.scope, exc)
            raise

    return logged


def _declared_guards(handler: BaseRouteHandler) -> list[object]:
    """The guards as written on the handler and its controller (Litestar wraps resolved ones)."""
    return [guard for layer in handler.ownership_layers for guard in (layer.guards or [])]


class AuthenticationMiddleware(ASGIMiddleware):
    """Resolves the bearer credential to a principal and applies its rate limit."""

    scopes = (ScopeType.HTTP,)

    def __init__(self, authenticator: Authenticator, buckets: RequestLimits) -> None:
        self._authenticator = authenticator
        self._buckets = buckets
        self.should_bypass_for_scope = lambda scope: is_public(
            scope["route_handler"], scope["path"]
        )

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        try:
            principal = await self._authenticator.authenticate(authorization)
        except Unauthorized as exc:
            log_refused(scope, exc, **presented(authorization))
            raise
        if not principal.unrestricted:
            wait = scope.pop(PRE_ADMITTED, None)  # type: ignore[misc]
            if wait is None:
                wait = await self._buckets.admit(principal.credential_id)
            if wait > 0:
                raise RateLimited(
                    f"more than the allowed requests for {principal.credential_id}; "
                    f"retry in {wait:.1f} s",
                    retry_after=wait,
                )
        scope["auth"] = principal
        scope["user"] = principal
        await next_app(scope, receive, send)


def current_principal(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    principal = connection.scope.get("auth")
    if not isinstance(principal, Principal):
        raise Unauthorized("an Authorization: Bearer credential is required", field="authorization")
    return principal


def authorize_customer(connection: ASGIConnection[Any, Any, Any, Any], customer_id: str) -> None:
    """403 unless the caller may act for ``customer_id`` (its token's or key's customer)."""
    try:
        current_principal(connection).check_customer(customer_id)
    except (Unauthorized, Forbidden) as exc:
        _refused_principal(connection.scope, exc)
        raise


def _requested_customer(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    customer = connection.path_params.get("customer_id")
    if customer is None:
        given = connection.query_params.getall("customer_id", [])
        if len(given) > 1:
            raise BadRequest(
                "query parameter 'customer_id' is given more than once", field="customer_id"
            )
        customer = given[0] if given else None
    return str(customer) if customer is not None else None


@_logged
def ingest_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Only an ingest token (its customer is checked against the body by the handler)."""
    principal = current_principal(connection)
    if principal.unrestricted:
        return
    if principal.kind is not Kind.INGEST:
        raise Forbidden("only ingest tokens may report usage", field="authorization")


def _operator(role: Role) -> AsyncGuard:
    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = current_principal(connection)
        if principal.unrestricted:
            return
        if principal.kind is not Kind.OPERATOR or principal.role is None:
            raise Forbidden("ingest tokens may only report usage", field="authorization")
        if not principal.role.includes(role):
            raise Forbidden(f"{principal.describe()} needs the {role} role", field="authorization")
        if principal.customer_id is not None:
            customer = _requested_customer(connection)
            if customer is None:
                raise Forbidden(
                    f"{principal.describe()} may not use an endpoint that spans every customer",
                    field="authorization",
                )
            principal.check_customer(customer)

    guard.__name__ = guard.__qualname__ = role.value
    return _logged(guard)


viewer = _operator(Role.VIEWER)
editor = _operator(Role.EDITOR)
admin = _operator(Role.ADMIN)
ACCESS_GUARDS = frozenset({ingest_only, viewer, editor, admin})
REQUIRED_ROLE = {ingest_only: "ingest", viewer: "viewer", editor: "editor", admin: "admin"}


def declared_access(handler: BaseRouteHandler, path: str) -> str:
    """What a handler demands: ``public``, ``ingest`` or a role; undeclared means ``admin``."""
    if is_public(handler, path):
        return PUBLIC
    for guard in _declared_guards(handler):
        if guard in REQUIRED_ROLE:
            return REQUIRED_ROLE[guard]
    return Role.ADMIN.value


async def fail_closed(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """App-wide: a non-public handler without an access guard is admin-only."""
    if declared_access(handler, connection.scope["path"]) == Role.ADMIN.value:
        await admin(connection, handler)
