"""Ingest inserts as driver-level SQL: rows without SQLAlchemy's per-value type processing.

SQLAlchemy's typed insert spent more CPU on each report than the rest of its request: a type
processor per value, and an execution context per batch. ``DriverInsert`` writes the same
values, in the form those processors give the driver, with one statement per batch. It knows
the types the ingest tables use (``UtcDateTime``, ``Uuid``, ``JSON``, and plain strings,
numbers and booleans) and refuses a table with any other; a test stores rows both ways on
SQLite and PostgreSQL and compares what the database holds. Reads keep the typed tables.

``ReportInsert`` is the ``usage_reports`` insert, ``ON CONFLICT (report_id) DO NOTHING
RETURNING id, report_id``. The writer's statements derive the outbox rows from the new reports'
rows inside the database, so a stored report gets none: on PostgreSQL ``ReportAndOutboxInsert``
writes both in one statement, a data-modifying CTE; on SQLite ``SqliteReportAndOutbox`` writes
them in one ``BEGIN IMMEDIATE`` transaction and reads the new keys back as one row.
"""

from __future__ import annotations

import functools
import json
import operator
import uuid
from collections.abc import Callable, Iterable, Sequence
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


def _json(value: Any) -> str:
    """``json.dumps``, as SQLAlchemy's ``JSON`` type binds it; empty lists and maps are common."""
    if not value:
        if type(value) is list:
            return "[]"
        if type(value) is dict:
            return "{}"
    return json.dumps(value)


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
        return _json
    if isinstance(column_type, String | Integer | BigInteger | Boolean):
        return _same
    raise ValueError(f"no driver-level conversion for {type(column_type).__name__}")


def _values_of(columns: Sequence[str]) -> Callable[[dict[str, Any]], list[Any]]:
    """A row's values in ``columns`` order, as a list to convert in place."""
    get = operator.itemgetter(*columns)
    if len(columns) == 1:
        return lambda row: [get(row)]
    return lambda row: list(get(row))


class DriverInsert:
    """``INSERT INTO table (every column but the key) VALUES …`` with a ``suffix``, per dialect."""

    def __init__(self, table: Table, dialect: str, paramstyle: str, suffix: str = "") -> None:
        if dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported database dialect {dialect!r}")
        self.columns: tuple[str, ...] = tuple(c.name for c in table.columns if not c.primary_key)
        self._pairs = tuple(
            (c.name, _converter(c.type, dialect)) for c in table.columns if not c.primary_key
        )
        self._values = _values_of(self.columns)
        self._converted = tuple(
            (position, convert)
            for position, (_, convert) in enumerate(self._pairs)
            if convert is not _same
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
        flat: list[Any] = []
        for row in rows:
            values = self._values(row)
            for position, convert in self._converted:
                values[position] = convert(values[position])
            flat.extend(values)
        return tuple(flat)


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

    def returned_ids(self, report_ids: Iterable[uuid.UUID]) -> dict[Any, uuid.UUID]:
        """Each of ``report_ids`` by the value RETURNING gives back for it."""
        if self._sqlite:
            return {rid.hex: rid for rid in report_ids}
        return {rid: rid for rid in report_ids}

    def returned_id(self, value: Any) -> uuid.UUID:
        """A ``report_id`` as RETURNING gives it back."""
        if isinstance(value, uuid.UUID):
            return value
        return uuid.UUID(hex=value) if self._sqlite else uuid.UUID(str(value))


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


def _outbox_select(report: str, metric: str, value: str, created_at: str) -> str:
    """The outbox columns and the ``SELECT`` list deriving them from a new report's row.

    One row per metric of the report: ``report`` names the report's row, ``metric`` and
    ``value`` one of its metrics (the value as ``outbox.metric_text`` spells it).
    """
    derived = {
        "report_pk": f"{report}.id",
        "report_id": f"{report}.report_id",
        "customer_id": f"{report}.customer_id",
        "instance_id": f"{report}.instance_id",
        "metric": metric,
        "kind": "'report'",
        "window_start": f"{report}.window_start",
        "window_end": f"{report}.window_end",
        "value": value,
        "state": "'pending'",
        "batch_id": "NULL",
        "period_id": "NULL",
        "generation": "0",
        "created_at": created_at,
    }
    columns = [c.name for c in FORWARDS.columns if not c.primary_key]
    if sorted(columns) != sorted(derived):
        raise ValueError(f"the outbox columns changed: {columns}; derive each from a report")
    return (
        f"INSERT INTO {FORWARDS.name} ({', '.join(columns)}) "
        f"SELECT {', '.join(derived[name] for name in columns)}"
    )


class SqliteReportAndOutbox:
    """SQLite: a batch of reports and the outbox rows of the new ones, in a few steps.

    Each step through ``sqlite3`` lets go of the GIL and takes it back, and under load the event
    loop's thread holds it: a ``RETURNING`` row cost one such step each. So the new reports are
    told apart by their keys instead. Inside ``BEGIN IMMEDIATE`` no other writer runs, and each
    new row's key is one above the largest before it, so the rows above the last new key less
    the count inserted are the rows this batch inserted (the writer checks the count). Their
    outbox rows are derived from them, one per metric, with the value's text as the stored JSON
    spells it (``->`` gives back the number's own text), and their keys come back as one row.

    SQLite's JSON paths cannot spell a key holding ``"``: such a metric's value comes out NULL,
    which the outbox refuses, so its report is refused. The catalogue's names never hold one.
    """

    begin = "BEGIN IMMEDIATE"
    created = f"SELECT json_group_array(json_array(id, report_id)) FROM {REPORTS.name} WHERE id > ?"  # noqa: S608
    outbox = (
        _outbox_select("r", "m.key", "r.metrics -> m.fullkey", "?")
        + f" FROM {REPORTS.name} AS r, json_each(r.metrics) AS m WHERE r.id > ?"
        + " ORDER BY r.id, m.key"
    )

    def __init__(self) -> None:
        self.reports = DriverInsert(
            REPORTS, "sqlite", "qmark", " ON CONFLICT (report_id) DO NOTHING"
        )

    @staticmethod
    def outbox_parameters(created_at: datetime, last_key: int) -> tuple[Any, ...]:
        return _sqlite_time(created_at), last_key

    @staticmethod
    def created_keys(text: str) -> dict[uuid.UUID, int]:
        """The new reports' keys by report id, from the ``created`` row."""
        return {uuid.UUID(hex=report_id): key for key, report_id in json.loads(text)}


class ReportAndOutboxInsert:
    """PostgreSQL: a batch of reports and the outbox rows of the new ones, in one statement.

    The outbox rows are derived by the statement itself from each report it inserted (one per
    metric), so a stored report gets none and the only parameter they take is their creation
    time (``$1``). ``m`` is ``json_each_text`` of the stored ``metrics``: a ``json`` column keeps
    the text ``json.dumps`` wrote, whose numbers are spelled as ``outbox.metric_text`` spells them.

    Two forms of the same statement. A batch whose text fits asyncpg's statement cache gives
    each value its own parameter (``VALUES``), the cheapest to encode; asyncpg prepares one text
    per batch size once. A larger batch would be prepared again every time, so it takes one array
    parameter per column (``unnest``), a text that is the same for every batch.
    """

    def __init__(self, *, cacheable_text: int = ASYNCPG_CACHEABLE_TEXT) -> None:
        reports = [c for c in REPORTS.columns if not c.primary_key]
        self.reports = ReportInsert("postgresql", "numeric_dollar")
        self._cacheable_text = cacheable_text
        self._report_pairs = tuple((c.name, _converter(c.type, "postgresql")) for c in reports)
        self._outbox = (
            _outbox_select("new", "m.key", "m.value", "$1::timestamptz")
            + " FROM new CROSS JOIN LATERAL json_each_text(new.metrics) AS m"
            + ' ORDER BY new.id, m.key COLLATE "C"'
        )
        arrays = ", ".join(f"${n + 2}::{_postgres_cast(c.type)}[]" for n, c in enumerate(reports))
        self.arrays_statement = self._combined(f"SELECT * FROM unnest({arrays})")  # noqa: S608
        self._statements: dict[int, str | None] = {}

    def _combined(self, rows: str) -> str:
        # Only the tables' own names and placeholders: every value is a bound parameter.
        return (
            f"WITH new AS (INSERT INTO {REPORTS.name} ({', '.join(self.reports.columns)}) "  # noqa: S608
            f"{rows} ON CONFLICT (report_id) DO NOTHING RETURNING *), "
            f"outbox AS ({self._outbox}) "
            "SELECT id, report_id FROM new"
        )

    def _values_statement(self, reports: int) -> str | None:
        """The ``VALUES`` text for this many reports, or None when too long to be cached."""
        if reports not in self._statements:
            width = len(self.reports.columns)
            groups = (
                "(" + ", ".join(f"${r * width + c + 2}" for c in range(width)) + ")"
                for r in range(reports)
            )
            text = self._combined(f"VALUES {', '.join(groups)}")
            self._statements[reports] = text if len(text) <= self._cacheable_text else None
        return self._statements[reports]

    def build(
        self, reports: Sequence[dict[str, Any]], outbox_created_at: datetime
    ) -> tuple[str, tuple[Any, ...]]:
        """The statement for these reports and its parameters, each as the driver takes it."""
        created_at = _postgres_time(outbox_created_at)
        values = self._values_statement(len(reports))
        if values is not None:
            return values, (created_at, *self.reports.parameters(reports))
        return self.arrays_statement, (
            created_at,
            *([convert(row[name]) for row in reports] for name, convert in self._report_pairs),
        )


COLUMNS: tuple[str, ...] = ReportInsert("sqlite", "qmark").columns
