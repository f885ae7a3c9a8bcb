"""The ingest insert as driver-level SQL: ``usage_reports`` rows without per-value type processing.

SQLAlchemy's typed insert spent more CPU on each report than the rest of its request: a type
processor per value, and an execution context per batch. This writes the same values, in the
form those processors give the driver, with one statement per batch; the types it skips are
the table's own (``UtcDateTime``, ``Uuid``, ``JSON``, ``Boolean``), and a test stores rows both
ways on SQLite and PostgreSQL and compares what the database holds. Reads keep the typed table.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from collector.adapters.db.tables import REPORTS

COLUMNS: tuple[str, ...] = tuple(c.name for c in REPORTS.columns if c.name != "id")
_JSON = frozenset({"metrics", "missing", "unmeasured", "coverage"})
_TIMES = frozenset({"window_start", "window_end", "created_at"})


def _sqlite_time(value: datetime) -> str:
    """As SQLAlchemy's SQLite ``DATETIME`` stores a ``UtcDateTime``: naive UTC text."""
    if value.tzinfo is None:
        raise ValueError("naive datetimes are not stored; attach UTC first")
    t = value.astimezone(UTC)
    return (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d} "
        f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}.{t.microsecond:06d}"
    )


def _postgres_time(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetimes are not stored; attach UTC first")
    return value.astimezone(UTC)


def _converters(dialect: str) -> tuple[Callable[..., Any], ...]:
    """One function per column turning a row's value into what the driver receives."""
    same: Callable[[Any], Any] = lambda value: value  # noqa: E731
    if dialect == "sqlite":
        time: Callable[..., Any] = _sqlite_time
        report_id: Callable[..., Any] = lambda value: value.hex  # noqa: E731
    elif dialect == "postgresql":
        time, report_id = _postgres_time, same
    else:
        raise ValueError(f"unsupported database dialect {dialect!r}")
    return tuple(
        json.dumps
        if name in _JSON
        else time
        if name in _TIMES
        else report_id
        if name == "report_id"
        else same
        for name in COLUMNS
    )


class ReportInsert:
    """``INSERT … ON CONFLICT (report_id) DO NOTHING RETURNING id, report_id`` for a dialect."""

    def __init__(self, dialect: str, paramstyle: str) -> None:
        self._convert = _converters(dialect)
        self._dollar = paramstyle in ("numeric_dollar", "numeric")
        self._sqlite = dialect == "sqlite"
        self._statements: dict[int, str] = {}

    def statement(self, rows: int) -> str:
        """The SQL for ``rows`` rows, built once per size."""
        cached = self._statements.get(rows)
        if cached is None:
            width = len(COLUMNS)
            if self._dollar:
                groups = (
                    "(" + ", ".join(f"${r * width + c + 1}" for c in range(width)) + ")"
                    for r in range(rows)
                )
            else:
                groups = ("(" + ", ".join("?" * width) + ")" for _ in range(rows))
            # Only the table's own names and placeholders: every value is a bound parameter.
            cached = (
                f"INSERT INTO {REPORTS.name} ({', '.join(COLUMNS)}) "  # noqa: S608
                f"VALUES {', '.join(groups)} "
                "ON CONFLICT (report_id) DO NOTHING RETURNING id, report_id"
            )
            self._statements[rows] = cached
        return cached

    def parameters(self, rows: Sequence[dict[str, Any]]) -> tuple[Any, ...]:
        """The rows' values, flattened in column order, each as the driver takes it."""
        pairs = tuple(zip(COLUMNS, self._convert, strict=True))
        return tuple(convert(row[name]) for row in rows for name, convert in pairs)

    def returned_id(self, value: Any) -> uuid.UUID:
        """A ``report_id`` as RETURNING gives it back."""
        if isinstance(value, uuid.UUID):
            return value
        return uuid.UUID(hex=value) if self._sqlite else uuid.UUID(str(value))
