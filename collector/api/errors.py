"""One place maps every error to an HTTP status and the single JSON error shape."""

from __future__ import annotations

from typing import Any

import structlog
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException

from collector.api.schemas import ErrorBody
from collector.errors import CollectorError
from collector.telemetry import CollectorMetrics

log = structlog.get_logger("collector.api")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


def _field_of(extra: Any) -> str | None:
    if isinstance(extra, list) and extra and isinstance(extra[0], dict):
        key = extra[0].get("key")
        return str(key) if key else None
    return None


def _too_large(request: Request[Any, Any, Any]) -> str:
    resolve = getattr(request.scope.get("route_handler"), "resolve_request_max_body_size", None)
    limit = resolve() if resolve is not None else None
    return f"body is larger than {limit} bytes" if limit else "body is too large"


def error_response(
    status: int,
    code: str,
    detail: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    return Response(
        content=ErrorBody(error=code, detail=detail, field=field).model_dump(),
        status_code=status,
        media_type=MediaType.JSON,
        headers=headers,
    )


def make_exception_handler(metrics: CollectorMetrics) -> Any:
    def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        headers: dict[str, str] | None = None
        if isinstance(exc, CollectorError):
            status, code, detail, field = exc.status_code, exc.code, exc.detail, exc.field
            headers = exc.response_headers() or None
        elif isinstance(exc, ValidationException):
            status, code, detail, field = 400, "bad_request", exc.detail, _field_of(exc.extra)
        elif isinstance(exc, HTTPException):
            status = exc.status_code
            code, detail, field = _HTTP_CODES.get(status, "http_error"), exc.detail, None
            headers = {k: v for k, v in (exc.headers or {}).items() if k.lower() == "allow"}
            if status == 413:
                detail = _too_large(request)
        else:
            log.error("unhandled error", path=request.url.path, error_type=type(exc).__name__)
            status, code, detail, field = 500, "internal_error", "internal server error", None
        if status >= 500:
            log.warning("request failed", path=request.url.path, status=status, error=code)
        metrics.http_errors.labels(str(status), code).inc()
        return error_response(status, code, detail, field, headers or None)

    return handle
