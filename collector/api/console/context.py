"""What every console page reads: the services behind it, and who is looking.

Pages call the same services as the API (``/api/customers``, ``/api/forwarding/status``,
``/api/reconciliation``, ``/reconcile``, ``/invoice-preview``), so a figure on a page is the
figure the API answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.response import Template

from collector.api.auth import current_principal
from collector.services.console_sessions import ConsoleSessions, Session
from collector.services.customers import CustomersService
from collector.services.drift import ReconciliationList
from collector.services.forwarding_status import ForwardingStatusService
from collector.services.leader import Leadership
from collector.services.principals import Principal, Role
from collector.services.reconcile import ReconcileService
from collector.services.token_buckets import RequestLimits
from collector.services.usage import UsageService
from collector.settings import CollectorSettings
from common.catalogue import MetricCatalogue
from common.clock import Clock

SESSION_COOKIE = "usage_console"
SESSION_STATE = "console_session"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
"""On every console page: scripts and styles only from the collector, never in a frame."""
LIVE_TARGET = "live"
"""The element id htmx refreshes in place; its request is answered with that fragment alone."""


@dataclass(frozen=True)
class Console:
    settings: CollectorSettings
    clock: Clock
    catalogue: MetricCatalogue
    sessions: ConsoleSessions
    customers: CustomersService
    forwarding: ForwardingStatusService
    reconciliation: ReconciliationList
    reconciler: ReconcileService
    usage: UsageService
    rate_limits: RequestLimits
    leadership: Leadership


def session_of(request: Request[Any, Any, Any]) -> Session | None:
    """The verified session the guard stored (None while authentication is off)."""
    session = request.state.get(SESSION_STATE)
    return session if isinstance(session, Session) else None


def may_act(principal: Principal) -> bool:
    """Editors act, as in the API: retrying spans every customer, so not with a scoped key."""
    if principal.unrestricted:
        return True
    return (
        principal.role is not None
        and principal.role.includes(Role.EDITOR)
        and principal.customer_id is None
    )


def live_refresh(request: Request[Any, Any, Any]) -> bool:
    """htmx asking for the live fragment only (JavaScript on, a timer fired)."""
    return (
        request.headers.get("hx-request") == "true"
        and request.headers.get("hx-target") == LIVE_TARGET
    )


def page(
    request: Request[Any, Any, Any],
    console: Console,
    template: str,
    *,
    status_code: int = 200,
    **context: Any,
) -> Template:
    """A console page (or its live fragment) with what the layout needs."""
    principal = current_principal(request)
    session = session_of(request)
    return Template(
        template_name=template,
        status_code=status_code,
        context={
            "principal": principal,
            "who": principal.describe(),
            "can_act": may_act(principal),
            "csrf": console.sessions.form_token(session),
            "signed_in": session is not None,
            "refresh_seconds": int(console.settings.console_refresh),
            "path": request.url.path,
            "now": console.clock.now(),
            **context,
        },
        headers={"Vary": "HX-Request, HX-Target"},
    )
