"""Query parameters: each endpoint takes only those it declares, each at most once.

A guard reads a query parameter when it checks the customer a request acts for, and the handler
reads it again. With ``?customer_id=a&customer_id=b`` they disagreed (the guard took the first,
the handler the last), so one value per name is the only way the two can never differ. A
parameter the endpoint does not declare is refused too, so a typo never silently widens a query.
"""

from __future__ import annotations

import re
from typing import Any

from litestar import Litestar, Request

from collector.errors import BadRequest

_TYPED = re.compile(r"\{(\w+):\w+\}")
_STATE_KEY = "declared_query_parameters"


def declared_query_parameters(app: Litestar) -> dict[int, frozenset[str]]:
    """Each route handler's query parameter names, as the OpenAPI document declares them."""
    paths = app.openapi_schema.paths or {}
    found: dict[int, frozenset[str]] = {}
    for route in app.routes:
        template = _TYPED.sub(r"{\1}", route.path)
        item = paths.get(template)
        for handler in getattr(route, "route_handlers", []):
            names: set[str] = set()
            for method in getattr(handler, "http_methods", ()):
                operation = getattr(item, method.lower(), None) if item is not None else None
                for parameter in (operation.parameters or []) if operation else []:
                    if getattr(parameter, "param_in", None) == "query":
                        names.add(parameter.name)
            found[id(handler)] = frozenset(names)
    return found


async def refuse_stray_query_parameters(request: Request[Any, Any, Any]) -> None:
    """A ``before_request`` hook: repeated or undeclared query parameters get 400."""
    declared: dict[int, frozenset[str]] | None = request.app.state.get(_STATE_KEY)
    if declared is None:
        declared = declared_query_parameters(request.app)
        request.app.state[_STATE_KEY] = declared
    allowed = declared.get(id(request.route_handler))
    if allowed is None:
        return
    seen: set[str] = set()
    for name, _ in request.query_params.multi_items():
        if name not in allowed:
            listed = ", ".join(sorted(allowed)) or "none"
            raise BadRequest(
                f"unknown query parameter {name!r}; this endpoint takes: {listed}", field=name
            )
        if name in seen:
            raise BadRequest(f"query parameter {name!r} is given more than once", field=name)
        seen.add(name)
