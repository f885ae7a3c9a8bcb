"""Reading and validating request parameters, and Stripe's list pagination."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from collector.stripe_sandbox import errors, objects

_INT = re.compile(r"^-?\d+$")


def required(params: dict[str, Any], name: str) -> Any:
    value = params.get(name)
    if value is None or value == "":
        raise errors.missing_param(name)
    return value


def integer(params: dict[str, Any], name: str, default: int | None = None) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not _INT.match(str(value)):
        raise errors.invalid_integer(name, value)
    return int(value)


def boolean(params: dict[str, Any], name: str, default: bool = False) -> bool:
    value = params.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if str(value) not in {"true", "false"}:
        raise errors.invalid(f"Invalid boolean: {value}", param=name)
    return str(value) == "true"


def metadata(params: dict[str, Any], current: dict[str, str] | None = None) -> dict[str, str]:
    """Merge ``metadata[...]`` into ``current``; an empty value deletes a key, as in Stripe."""
    result = dict(current or {})
    raw = params.get("metadata")
    if raw is None:
        return result
    if raw == "":
        return {}
    if not isinstance(raw, dict):
        raise errors.invalid("Invalid hash", param="metadata")
    for key, value in raw.items():
        if value == "":
            result.pop(key, None)
        else:
            result[str(key)] = str(value)
    return result


def choice(params: dict[str, Any], name: str, allowed: Iterable[str], default: str | None) -> Any:
    value = params.get(name, default)
    options = tuple(allowed)
    if value is not None and value not in options:
        raise errors.invalid(f"Invalid {name}: must be one of {', '.join(options)}", param=name)
    return value


def paginate(
    items: list[dict[str, Any]],
    params: dict[str, Any],
    url: str,
    render: Callable[[dict[str, Any]], dict[str, Any]] = lambda item: item,
) -> dict[str, Any]:
    """A ``list`` over ``items`` (newest first): limit, starting_after, ending_before."""
    limit = integer(params, "limit", 10) or 10
    if not 1 <= limit <= 100:
        raise errors.invalid("Invalid integer: limit must be between 1 and 100", param="limit")
    ids = [item["id"] for item in items]
    start, stop = 0, len(items)
    after, before = params.get("starting_after"), params.get("ending_before")
    if after:
        if after not in ids:
            raise errors.no_such("object", str(after), "starting_after")
        start = ids.index(after) + 1
    if before:
        if before not in ids:
            raise errors.no_such("object", str(before), "ending_before")
        stop = ids.index(before)
        start = max(start, stop - limit)
    page = items[start:stop][:limit]
    has_more = start + len(page) < stop
    return objects.list_object([render(item) for item in page], url, has_more)


def newest_first(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stripe lists newest first; insertion order breaks ties in ``created``."""
    indexed = list(enumerate(items))
    indexed.sort(key=lambda pair: (pair[1].get("created", 0), pair[0]), reverse=True)
    return [item for _, item in indexed]
