"""OpenAPI for authentication: the bearer scheme and the errors a guarded call can get.

Every error is documented with the one error body the exception handler writes.
"""

from __future__ import annotations

import re

from litestar import Litestar
from litestar.openapi.spec import (
    Components,
    OpenAPIMediaType,
    OpenAPIResponse,
    Reference,
    SecurityScheme,
)

from collector.api.auth import PUBLIC, declared_access

SCHEME = "bearer"
_ERROR = Reference(ref="#/components/schemas/ErrorBody")
_GUARDED = {
    "400": "Malformed request.",
    "401": "Missing, unknown or revoked credential.",
    "403": "The credential's role or customer does not allow this call.",
    "408": "The request body did not arrive in time.",
    "422": "The request failed validation (see field).",
    "429": "Over the credential's rate limit; see Retry-After.",
    "503": "The database is unavailable; retry later.",
}
_WITH_BODY = {"413": "Body larger than the configured limit."}
_BODY_ERRORS = {
    "400": "Malformed or unverifiable request.",
    "408": _GUARDED["408"],
    **_WITH_BODY,
}


def _error(description: str) -> OpenAPIResponse:
    return OpenAPIResponse(
        description=description,
        content={"application/json": OpenAPIMediaType(schema=_ERROR)},
    )


def document_security(app: Litestar) -> None:
    """Mark each operation public or bearer-protected, with the errors auth can add."""
    schema = app.openapi_schema
    components = schema.components or Components()
    components.security_schemes = {
        **(components.security_schemes or {}),
        SCHEME: SecurityScheme(
            type="http",
            scheme="bearer",
            description="An ingest token (umt_...) or an operator API key (umk_...).",
        ),
    }
    schema.components = components
    for route in app.routes:
        path = re.sub(r"\{(\w+):[^}]+\}", r"{\1}", route.path)
        item = (schema.paths or {}).get(path)
        if item is None:
            continue
        for handler in getattr(route, "route_handlers", []):
            access = declared_access(handler, route.path)
            for method in handler.http_methods:
                operation = getattr(item, method.lower(), None)
                if operation is None:
                    continue
                if "400" in (operation.responses or {}):
                    # Litestar documents its own 400 body; the error handler answers ours.
                    operation.responses = {
                        **(operation.responses or {}),
                        "400": _error(_GUARDED["400"]),
                    }
                if access == PUBLIC:
                    operation.security = []
                    if method in ("POST", "PUT", "PATCH"):
                        operation.responses = {
                            **{k: _error(_BODY_ERRORS[k]) for k in _BODY_ERRORS},
                            **(operation.responses or {}),
                        }
                    continue
                operation.security = [{SCHEME: []}]
                operation.description = (
                    f"{operation.description or ''}\n\nRequires: {access}.".strip()
                )
                extra = {**_GUARDED, **(_WITH_BODY if method in ("POST", "PUT", "PATCH") else {})}
                if "{" in path:
                    extra["404"] = "No such resource."
                responses = dict(operation.responses or {})
                for status, text in extra.items():
                    responses.setdefault(status, _error(text))
                operation.responses = responses
