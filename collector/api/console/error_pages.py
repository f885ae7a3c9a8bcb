"""Errors on console routes answer as pages, not the API's JSON error body.

A request without a valid session is sent to the sign-in page (htmx's live refresh is told to
load it whole, with ``HX-Redirect``); every other error is a page naming what went wrong and
what fixes it, with the same status the API would answer.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.response import Redirect, Template

from collector.api.console.context import SECURITY_HEADERS
from collector.errors import CollectorError, Unauthorized
from collector.telemetry import CollectorMetrics

log = structlog.get_logger("collector.console")
SIGN_IN = "/console/sign-in"
TITLES = {
    400: "That request is not one the console understands",
    403: "Your key may not do this",
    404: "Not found",
    405: "Not allowed here",
    409: "That cannot be done now",
    413: "That form is larger than the console accepts",
    429: "Too many requests",
    502: "Stripe could not be asked",
    503: "Unavailable",
}


def local_target(path: str | None) -> str:
    """``path`` if it is a console page of this site, else the overview (no open redirect)."""
    if (
        path
        and path.startswith("/console/")
        and not path.startswith("/console//")
        and not any(ch in path for ch in "\\\r\n")
    ):
        return path
    return "/console/"


def sign_in_redirect(request: Request[Any, Any, Any]) -> Response[Any]:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    location = f"{SIGN_IN}?{urlencode({'next': local_target(target)})}"
    if request.headers.get("hx-request") == "true":
        return Response(b"", status_code=200, headers={"HX-Redirect": location})
    return Redirect(location, status_code=303)


def _status(exc: Exception) -> tuple[int, str, str]:
    if isinstance(exc, CollectorError):
        return exc.status_code, exc.code, exc.detail
    if isinstance(exc, ValidationException):
        return 400, "bad_request", str(exc.detail)
    if isinstance(exc, HTTPException):
        return exc.status_code, "http_error", str(exc.detail)
    return 500, "internal_error", "internal server error"


def error_page_handler(telemetry: CollectorMetrics) -> Any:
    """The exception handler of every console route."""

    def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        if isinstance(exc, Unauthorized):
            return sign_in_redirect(request)
        status, code, detail = _status(exc)
        if status == 500:
            log.error("console page failed", path=request.url.path, error_type=type(exc).__name__)
        telemetry.http_errors.labels(str(status), code).inc()
        headers = exc.response_headers() if isinstance(exc, CollectorError) else {}
        return Template(
            template_name="error.html",
            status_code=status,
            context={
                "status": status,
                "title": TITLES.get(status, "Something went wrong"),
                "detail": detail,
                "signed_in": False,
                "principal": None,
            },
            headers={**SECURITY_HEADERS, **headers, "Cache-Control": "no-store"},
        )

    return handle
