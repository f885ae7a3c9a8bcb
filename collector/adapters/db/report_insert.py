"""Ingest inserts as driver-level SQL: rows without SQLAlchemy's per-value type processing.

SQLAlchemy's typed insert spent more CPU on each report than the rest of its request: a type
processor per value, and an execution context per batch. ``DriverInsert`` writes the same
values, in the form those processors give the driver, with one statement per batch. It knows
the types the ingest tables use (``UtcDateTime``, ``Uuid``, ``JSON``, and plain strings,
numbers and booleans) and refuses a table with any other; a test stores rows both ways on
SQLite and PostgreSQL and compares what the database holds. Reads keep the typed tables.

``ReportInsert`` is the ``usage_reports`` insert, ``ON CONFLICT (report_id) DO NOTHING
RETURNING id, report_id``; ``ForwardInsert`` the outbox rows written in the same transaction.
On PostgreSQL, ``ReportAndOutboxInsert`` writes both in one statement: a data-modifying CTE
whose outbox rows join the reports the insert returned, so a stored report gets none.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Integer, String, Table, Uuid

from collector.adapters.db.tables import FORWARDS, REPORTS, UtcDateTime

Convert = Callable[[Any], Any]


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


def _same(value: Any) -> Any:
    return value


def _sqlite_uuid(value: uuid.UUID) -> str:
    return value.hex


def _nullable(convert: Convert) -> Convert:
    return lambda value: None if value is None else convert(value)


def _remembered(convert: Convert) -> Convert:
    """``convert`` for times, remembering recent results.

    A report's outbox rows repeat its window, and a fleet's reports share a few windows. The
    converted value depends only on the instant, which is what a datetime's equality compares.
    """
    cached = functools.lru_cache(maxsize=4096)(convert)
    return lambda value: None if value is None else cached(value)


def _converter(column_type: Any, dialect: str) -> Convert:
    """What the column's type processor would hand the driver."""
    sqlite = dialect == "sqlite"
    if isinstance(column_type, UtcDateTime):
        return _remembered(_sqlite_time if sqlite else _postgres_time)
    if isinstance(column_type, Uuid):
        return _nullable(_sqlite_uuid) if sqlite else _same
    if isinstance(column_type, JSON):
        return json.dumps
    if isinstance(column_type, String | Integer | BigInteger | Boolean):
        return _same
    raise ValueError(f"no driver-level conversion for {type(column_type).__name__}")


class DriverInsert:
    """``INSERT INTO table (every column but the key) VALUES …`` with a ``suffix``, per dialect."""

    def __init__(self, table: Table, dialect: str, paramstyle: str, suffix: str = "") -> None:
        if dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported database dialect {dialect!r}")
        self.columns: tuple[str, ...] = tuple(c.name for c in table.columns if not c.primary_key)
        self._pairs = tuple(
            (c.name, _converter(c.type, dialect)) for c in table.columns if not c.primary_key
        )
        self._table = table.name
        self._suffix = suffix
        self._dollar = paramstyle in ("numeric_dollar", "numeric")
        self._statements: dict[int, str] = {}

    def statement(self, rows: int) -> str:
        """The SQL for ``rows`` rows, built once per size."""
        cached = self._statements.get(rows)
        if cached is None:
            width = len(self.columns)
            if self._dollar:
                groups = (
                    "(" + ", ".join(f"${r * width + c + 1}" for c in range(width)) + ")"
                    for r in range(rows)
                )
            else:
                groups = ("(" + ", ".join("?" * width) + ")" for _ in range(rows))
            # Only the table's own names and placeholders: every value is a bound parameter.
            cached = (
                f"INSERT INTO {self._table} ({', '.join(self.columns)}) "  # noqa: S608
                f"VALUES {', '.join(groups)}{self._suffix}"
            )
            self._statements[rows] = cached
        return cached

    def parameters(self, rows: Sequence[dict[str, Any]]) -> tuple[Any, ...]:
        """The rows' values, flattened in column order, each as the driver takes it."""
        pairs = self._pairs
        return tuple(convert(row[name]) for row in rows for name, convert in pairs)


class ReportInsert(DriverInsert):
    """``usage_reports``: a stored ``report_id`` is skipped; new rows give back their keys."""

    def __init__(self, dialect: str, paramstyle: str) -> None:
        super().__init__(
            REPORTS,
            dialect,
            paramstyle,
            " ON CONFLICT (report_id) DO NOTHING RETURNING id, report_id",
        )
        self._sqlite = dialect == "sqlite"

    def returned_id(self, value: Any) -> uuid.UUID:
        """A ``report_id`` as RETURNING gives it back."""
        if isinstance(value, uuid.UUID):
            return value
        return uuid.UUID(hex=value) if self._sqlite else uuid.UUID(str(value))


class ForwardInsert(DriverInsert):
    """``forwards``: the outbox rows of new reports."""

    def __init__(self, dialect: str, paramstyle: str) -> None:
        super().__init__(FORWARDS, dialect, paramstyle)


_POSTGRES_CASTS: tuple[tuple[type, str], ...] = (
    (UtcDateTime, "timestamptz"),
    (Uuid, "uuid"),
    (JSON, "json"),
    (Boolean, "boolean"),
    (BigInteger, "bigint"),
    (Integer, "integer"),
    (String, "text"),
)
"""Column types and the type a parameter for them is read as, the more specific first.

Text is read as unbounded ``text``: a cast to ``varchar(n)`` would cut a long value short where
the column refuses it.
"""


def _postgres_cast(column_type: Any) -> str:
    for kind, name in _POSTGRES_CASTS:
        if isinstance(column_type, kind):
            return name
    raise ValueError(f"no PostgreSQL cast for {type(column_type).__name__}")


ASYNCPG_CACHEABLE_TEXT = 15 * 1024
"""asyncpg's ``max_cacheable_statement_size`` (bytes): a longer text is prepared every time."""


class ReportAndOutboxInsert:
    """PostgreSQL: a batch of reports and the outbox rows of the new ones, in one statement.

    The outbox rows are given for every report of the batch, without ``report_pk``; only those
    whose ``report_id`` the report insert returned are written, each with its report's key.

    Two forms of the same statement. A batch whose text fits asyncpg's statement cache gives
    each value its own parameter (``VALUES``), the cheapest to encode; asyncpg prepares one text
    per batch size once. A larger batch would be prepared again every time, so it takes one array
    parameter per column (``unnest``), a text that is the same for every batch.
    """

    def __init__(self, *, cacheable_text: int = ASYNCPG_CACHEABLE_TEXT) -> None:
        reports = [c for c in REPORTS.columns if not c.primary_key]
        forwards = [c for c in FORWARDS.columns if not c.primary_key and c.name != "report_pk"]
        self.reports = ReportInsert("postgresql", "numeric_dollar")
        self.forward_columns = tuple(c.name for c in forwards)
        self._cacheable_text = cacheable_text
        self._report_pairs = tuple((c.name, _converter(c.type, "postgresql")) for c in reports)
        self._forward_pairs = tuple((c.name, _converter(c.type, "postgresql")) for c in forwards)
        self._casts = tuple(_postgres_cast(c.type) for c in forwards)
        self._names = ", ".join(f'"{name}"' for name in self.forward_columns)
        arrays = [f"${n + 1}::{_postgres_cast(c.type)}[]" for n, c in enumerate(reports + forwards)]
        self.arrays_statement = self._combined(
            f"INSERT INTO {REPORTS.name} ({', '.join(self.reports.columns)}) "  # noqa: S608
            f"SELECT * FROM unnest({', '.join(arrays[: len(reports)])}) "
            "ON CONFLICT (report_id) DO NOTHING RETURNING id, report_id",
            f"unnest({', '.join(arrays[len(reports) :])})",
        )
        self._statements: dict[tuple[int, int], str | None] = {}

    def _combined(self, report_insert: str, forward_rows: str) -> str:
        chosen = ", ".join(f'f."{name}"' for name in self.forward_columns)
        # Only the tables' own names and placeholders: every value is a bound parameter.
        return (
            f"WITH new AS ({report_insert}), "  # noqa: S608
            f"outbox AS (INSERT INTO {FORWARDS.name} (report_pk, {self._names}) "
            f"SELECT new.id, {chosen} FROM new "
            f"JOIN {forward_rows} AS f ({self._names}) ON f.report_id = new.report_id) "
            "SELECT id, report_id FROM new"
        )

    def _values_statement(self, reports: int, forwards: int) -> str | None:
        """The ``VALUES`` text for these sizes, or None when it is too long to be cached."""
        key = (reports, forwards)
        if key not in self._statements:
            width = len(self.forward_columns)
            offset = reports * len(self.reports.columns)
            groups = (
                "("
                + ", ".join(
                    f"${offset + r * width + c + 1}::{cast}" for c, cast in enumerate(self._casts)
                )
                + ")"
                for r in range(forwards)
            )
            text = (
                self._combined(self.reports.statement(reports), f"(VALUES {', '.join(groups)})")
                if forwards
                else self.reports.statement(reports)
            )
            self._statements[key] = text if len(text) <= self._cacheable_text else None
        return self._statements[key]

    def build(
        self, reports: Sequence[dict[str, Any]], forwards: Sequence[dict[str, Any]]
    ) -> tuple[str, tuple[Any, ...]]:
        """The statement for these rows and its parameters, each as the driver takes it."""
        values = self._values_statement(len(reports), len(forwards))
        if values is not None:
            pairs = self._forward_pairs
            forward_values = tuple(
                convert(row[name]) for row in forwards for name, convert in pairs
            )
            return values, self.reports.parameters(reports) + forward_values
        return self.arrays_statement, tuple(
            [convert(row[name]) for row in rows]
            for rows, pairs in ((reports, self._report_pairs), (forwards, self._forward_pairs))
            for name, convert in pairs
        )


COLUMNS: tuple[str, ...] = ReportInsert("sqlite", "qmark").columns
