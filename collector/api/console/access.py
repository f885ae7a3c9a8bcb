"""Who may see and do what in the console: the session guard and the form check.

The console's routes are public to the API's bearer middleware (like the Stripe webhook, they
are authenticated otherwise): this guard resolves the session cookie to the operator key it was
signed in with, read again on every request, and applies the API's rules to it. A page needs the
viewer role unless its handler asks for more with ``opt={CONSOLE_ROLE: "editor"}``; a key's
rate limit counts console requests too. Every state-changing form carries the session's form
token, and a request a browser marks as cross-site is refused before its form is read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from collector.api.auth import log_refused
from collector.api.console.context import SESSION_COOKIE, SESSION_STATE, Console, session_of
from collector.errors import BadRequest, Forbidden, RateLimited
from collector.services.principals import Role

CONSOLE_ROLE = "console_role"
NO_SESSION = "console_no_session"
CSRF_FIELD = "csrf"
FORM_TYPE = "application/x-www-form-urlencoded"
_SAFE_FETCH_SITES = frozenset({"same-origin", "none"})
Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]


def session_guard(console: Console) -> Guard:
    """The guard every console route passes, except those marked ``NO_SESSION``."""

    async def signed_in(
        connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
    ) -> None:
        if handler.opt.get(NO_SESSION):
            return
        principal, session = await console.sessions.principal(
            connection.cookies.get(SESSION_COOKIE)
        )
        connection.scope["auth"] = principal
        connection.state[SESSION_STATE] = session
        if principal.unrestricted:
            return
        required = Role(handler.opt.get(CONSOLE_ROLE, Role.VIEWER.value))
        if principal.role is None or not principal.role.includes(required):
            refused = Forbidden(
                f"{principal.describe()} needs the {required} role for this", field="session"
            )
            log_refused(connection.scope, refused, credential_id=principal.credential_id)
            raise refused
        wait = await console.rate_limits.admit(principal.credential_id)
        if wait > 0:
            raise RateLimited(
                f"more than the allowed requests for {principal.credential_id}; "
                f"retry in {wait:.1f} s",
                retry_after=wait,
            )

    return signed_in


def refuse_cross_site(request: Request[Any, Any, Any]) -> None:
    """403 for a request the browser says another site made (``Sec-Fetch-Site``)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in _SAFE_FETCH_SITES:
        raise Forbidden(f"the console refuses forms sent from another site ({site})")


async def form_of(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The posted HTML form's fields (one value each); 400 for any other body."""
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if not kind and not await request.body():
        return {}
    if kind != FORM_TYPE:
        raise BadRequest(f"console forms are sent as {FORM_TYPE}, not {kind or 'nothing'}")
    fields = await request.form()
    return {name: str(value) for name, value in fields.items() if isinstance(value, str)}


async def checked_form(request: Request[Any, Any, Any], console: Console) -> dict[str, str]:
    """The form of a signed-in action, once its token proves it came from this session."""
    refuse_cross_site(request)
    form = await form_of(request)
    try:
        console.sessions.check_form(session_of(request), form.get(CSRF_FIELD))
    except Forbidden as exc:
        log_refused(request.scope, exc)
        raise
    return form
