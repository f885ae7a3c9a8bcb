"""Signing in with an operator key, and out again.

The key is posted once, checked like a bearer credential, and exchanged for a session cookie
(``collector.services.console_sessions``): HttpOnly, SameSite=Strict, limited to ``/console``,
``Secure`` when the console is reached over https, and as long-lived as
``COLLECTOR_CONSOLE_SESSION_LIFETIME``. The sign-in form is bound to a cookie of its own, so a
sign-in posted from another site fails. A refused key is logged as ``auth_refused`` with the
same safe description of the credential the API logs, never the key.
"""

from __future__ import annotations

from typing import Annotated, Any

import structlog
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import Redirect, Template

from collector.api.auth import log_refused, presented
from collector.api.console.access import (
    CSRF_FIELD,
    NO_SESSION,
    form_of,
    refuse_cross_site,
)
from collector.api.console.context import SESSION_COOKIE, Console
from collector.api.console.error_pages import SIGN_IN, local_target
from collector.errors import CollectorError, Forbidden, Unauthorized

log = structlog.get_logger("collector.console")
SIGN_IN_COOKIE = "usage_console_sign_in"
SIGN_IN_FORM_SECONDS = 3600


def _secure(request: Request[Any, Any, Any]) -> bool:
    """Served over https, directly or behind a proxy that says so."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",", 1)[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def _cookie(
    request: Request[Any, Any, Any], key: str, value: str, max_age: int, path: str
) -> Cookie:
    return Cookie(
        key=key,
        value=value,
        max_age=max_age,
        path=path,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def _form(
    request: Request[Any, Any, Any],
    console: Console,
    target: str,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> Template:
    """The sign-in form, bound to a fresh cookie."""
    nonce = console.sessions.sign_in_nonce()
    return Template(
        template_name="sign_in.html",
        status_code=status_code,
        context={
            "next": target,
            "error": error,
            "token": console.sessions.sign_in_token(nonce),
            "signed_in": False,
            "principal": None,
        },
        cookies=[_cookie(request, SIGN_IN_COOKIE, nonce, SIGN_IN_FORM_SECONDS, SIGN_IN)],
    )


class SignInController(Controller):
    path = "/"
    opt = {NO_SESSION: True}

    @get("/sign-in", name="console:sign-in")
    async def form(
        self,
        request: Request[Any, Any, Any],
        console: NamedDependency[Console],
        next_page: Annotated[str | None, QueryParameter(name="next", max_length=2000)] = None,
    ) -> Response[Any]:
        target = local_target(next_page)
        if console.sessions.open:
            return Redirect(target, status_code=303)
        try:
            await console.sessions.principal(request.cookies.get(SESSION_COOKIE))
        except CollectorError:
            return _form(request, console, target)
        return Redirect(target, status_code=303)

    @post("/sign-in", name="console:sign-in-post", status_code=303)
    async def sign_in(
        self, request: Request[Any, Any, Any], console: NamedDependency[Console]
    ) -> Response[Any]:
        refuse_cross_site(request)
        form = await form_of(request)
        target = local_target(form.get("next"))
        if not console.sessions.check_sign_in(
            request.cookies.get(SIGN_IN_COOKIE), form.get(CSRF_FIELD)
        ):
            return _form(
                request,
                console,
                target,
                error="The sign-in form expired or your browser blocks cookies for this site; "
                "enter the key again.",
                status_code=400,
            )
        key = form.get("key", "")
        try:
            principal, cookie = await console.sessions.sign_in(key)
        except (Unauthorized, Forbidden) as exc:
            log_refused(request.scope, exc, **presented(f"Bearer {key.strip()}"))
            message = (
                exc.detail
                if isinstance(exc, Forbidden)
                else "That key is unknown or revoked. Ask an admin for an operator key "
                "(usage-collector keys create --role viewer)."
            )
            return _form(request, console, target, error=message, status_code=exc.status_code)
        log.info(
            "console_signed_in",
            credential_id=principal.credential_id,
            role=principal.role,
            customer_id=principal.customer_id,
        )
        lifetime = int(console.sessions.lifetime.total_seconds())
        return Redirect(
            target,
            status_code=303,
            cookies=[
                _cookie(request, SESSION_COOKIE, cookie, lifetime, "/console"),
                _cookie(request, SIGN_IN_COOKIE, "", 0, SIGN_IN),
            ],
        )

    @post("/sign-out", name="console:sign-out", status_code=303)
    async def sign_out(
        self, request: Request[Any, Any, Any], console: NamedDependency[Console]
    ) -> Response[Any]:
        """Forget the session cookie; without a valid session there is nothing to end."""
        try:
            principal, session = await console.sessions.principal(
                request.cookies.get(SESSION_COOKIE)
            )
        except CollectorError:
            return Redirect(SIGN_IN, status_code=303)
        refuse_cross_site(request)
        form = await form_of(request)
        console.sessions.check_form(session, form.get(CSRF_FIELD))
        log.info("console_signed_out", credential_id=principal.credential_id)
        return Redirect(
            SIGN_IN,
            status_code=303,
            cookies=[_cookie(request, SESSION_COOKIE, "", 0, "/console")],
        )
