"""How a command prints its result: aligned text for people, ``--output json`` for scripts.

Results go to stdout and nothing else does: logs and errors go to stderr, so a script can read
a command's JSON document (one line) or its text without filtering.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import click

TEXT = "text"
JSON = "json"

_OPTION = click.option(
    "--output",
    type=click.Choice([TEXT, JSON]),
    default=TEXT,
    show_default=True,
    help="text for people, json (one document on stdout) for scripts.",
)


def output_option[F: Callable[..., Any]](command: F) -> F:
    """The ``--output`` option every command that prints data takes."""
    return _OPTION(command)


def plain(value: Any) -> Any:
    """``value`` as JSON-ready data: dataclasses as objects, datetimes in ISO 8601."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(item) for item in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, Decimal):
        return str(value)
    return value


def emit_json(value: Any) -> None:
    click.echo(json.dumps(plain(value)))


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Aligned columns under upper-case headers, two spaces apart."""
    lines = [[str(h).upper() for h in headers], *([_cell(v) for v in row] for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def fields(pairs: Iterable[tuple[str, Any]]) -> str:
    """``key: value`` lines with the values aligned."""
    items = [(f"{key}:", _cell(value)) for key, value in pairs]
    width = max((len(key) for key, _ in items), default=0)
    return "\n".join(f"{key.ljust(width)} {value}".rstrip() for key, value in items)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value) or "-"
    return str(value)
