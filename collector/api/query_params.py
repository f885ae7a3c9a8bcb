"""Query parameters: each endpoint takes only those it declares, each at most once, each valid.

A guard reads a query parameter when it checks the customer a request acts for, and the handler
reads it again. With ``?customer_id=a&customer_id=b`` they disagreed (the guard took the first,
the handler the last), so one value per name is the only way the two can never differ. A
parameter the endpoint does not declare is refused too, so a typo never silently widens a query.

Values are checked here as well, with the conversion Litestar applies to the handler's
arguments, so that an error names the parameter as the caller typed it (``state``), not as the
handler's argument is called (``batch_state``, because Litestar reserves ``state``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Litestar, Request
from litestar.handlers.base import BaseRouteHandler
from litestar.params import ParameterKwarg

from collector.errors import BadRequest

_TYPED = re.compile(r"\{(\w+):\w+\}")
_STATE_KEY = "declared_query_parameters"
_VALUES_KEY = "query_parameter_types"


@dataclass(frozen=True)
class QueryParameter:
    """One declared query parameter: the handler argument it fills and that argument's type."""

    argument: str
    type: Any
    many: bool


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


def query_parameter_types(
    handler: BaseRouteHandler, names: frozenset[str]
) -> dict[str, QueryParameter]:
    """The handler's query parameters by the name a caller types (``names``, as declared)."""
    model = getattr(handler, "signature_model", None)
    if model is None:
        return {}
    types = {field.name: field.type for field in msgspec.structs.fields(model)}
    found: dict[str, QueryParameter] = {}
    for argument, definition in handler.parsed_fn_signature.parameters.items():
        kwarg = definition.kwarg_definition
        typed = (kwarg.query or kwarg.name) if isinstance(kwarg, ParameterKwarg) else None
        name = typed or argument
        if name in names and argument in types:
            many = bool(definition.is_non_string_sequence)
            found[name] = QueryParameter(argument, types[argument], many)
    return found


def _check_value(request: Request[Any, Any, Any], name: str, parameter: QueryParameter) -> None:
    """400 naming ``name`` unless its value converts as Litestar will convert it."""
    handler = request.route_handler
    raw: Any = request.query_params.getall(name) if parameter.many else request.query_params[name]
    try:
        msgspec.convert(
            raw, type=parameter.type, strict=False, dec_hook=handler.default_deserializer
        )
    except (msgspec.ValidationError, ValueError, TypeError) as exc:
        raise BadRequest(f"query parameter {name!r} is invalid: {exc}", field=name) from exc


async def refuse_stray_query_parameters(request: Request[Any, Any, Any]) -> None:
    """A ``before_request`` hook: repeated, undeclared or invalid query parameters get 400."""
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
    if not seen:
        return
    cache: dict[int, dict[str, QueryParameter]] = request.app.state.setdefault(_VALUES_KEY, {})
    key = id(request.route_handler)
    if key not in cache:
        cache[key] = query_parameter_types(request.route_handler, allowed)
    for name, parameter in cache[key].items():
        if name in seen:
            _check_value(request, name, parameter)
