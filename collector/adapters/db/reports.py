"""The report store: idempotent inserts and history reads, with database errors translated."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, null, or_, select, text, true, union_all
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from collector.adapters.db.tables import ReportRow, StoredReport
from collector.adapters.db.writer import GroupCommitWriter
from collector.errors import DatabaseUnavailable


@dataclass(frozen=True)
class IncompleteWindows:
    """A period's reports that were not measured in full.

    ``reports`` is how many are partial or list a metric as unmeasured; ``by_metric`` how many
    list each metric in ``missing`` or ``unmeasured`` (metrics never listed are left out).
    """

    reports: int = 0
    by_metric: dict[str, int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.reports == 0


@dataclass(frozen=True)
class HistoryQuery:
    customer_id: str
    limit: int
    since: datetime | None = None
    until: datetime | None = None
    before: tuple[datetime, int] | None = None


class ReportStore:
    """Reads and writes ``usage_reports``; every SQLAlchemy error leaves as a collector error."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.writer = GroupCommitWriter(engine)

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[AsyncSession]:
        try:
            async with self._sessions() as session:
                yield session
        except (OperationalError, DBAPIError, OSError) as exc:
            raise DatabaseUnavailable(
                f"the database is unavailable ({type(exc).__name__})"
            ) from exc
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(f"database error ({type(exc).__name__})") from exc

    async def insert_once(self, values: dict[str, Any]) -> tuple[StoredReport, bool]:
        """Insert a report unless its ``report_id`` exists; return the stored one and if new."""
        return await self.writer.insert(values)

    async def close(self) -> None:
        await self.writer.close()

    async def by_report_id(self, report_id: uuid.UUID) -> ReportRow | None:
        async with self._session() as session:
            result = await session.execute(
                select(ReportRow).where(ReportRow.report_id == report_id)
            )
            return result.scalar_one_or_none()

    async def history(self, query: HistoryQuery) -> Sequence[ReportRow]:
        """Reports of a customer, newest window first, keyset-paginated by (window_end, id)."""
        conditions = [ReportRow.customer_id == query.customer_id]
        if query.since is not None:
            conditions.append(ReportRow.window_end > query.since)
        if query.until is not None:
            conditions.append(ReportRow.window_end <= query.until)
        if query.before is not None:
            end, row_id = query.before
            conditions.append(
                or_(
                    ReportRow.window_end < end,
                    and_(ReportRow.window_end == end, ReportRow.id < row_id),
                )
            )
        statement = (
            select(ReportRow)
            .where(*conditions)
            .order_by(ReportRow.window_end.desc(), ReportRow.id.desc())
            .limit(query.limit)
        )
        async with self._session() as session:
            return (await session.execute(statement)).scalars().all()

    async def in_period(
        self, customer_id: str, start: datetime, end: datetime
    ) -> Sequence[ReportRow]:
        """Reports whose window ends in ``(start, end]``, oldest window first."""
        statement = (
            select(ReportRow)
            .where(
                ReportRow.customer_id == customer_id,
                ReportRow.window_end > start,
                ReportRow.window_end <= end,
            )
            .order_by(ReportRow.window_end, ReportRow.id)
        )
        async with self._session() as session:
            return (await session.execute(statement)).scalars().all()

    async def incomplete_in_period(
        self, customer_id: str, start: datetime, end: datetime
    ) -> IncompleteWindows:
        """Count the reports with windows ending in ``(start, end]`` not measured in full.

        One grouped query: each listed metric of each report becomes a row (``missing`` and
        ``unmeasured`` expanded in the database), plus one row without a metric per incomplete
        report; a metric listed twice in one report counts once.
        """
        in_period = (
            ReportRow.customer_id == customer_id,
            ReportRow.window_end > start,
            ReportRow.window_end <= end,
        )
        listed = [
            select(ReportRow.id.label("report"), names.c.value.label("metric"))
            .join_from(ReportRow, names, true())
            .where(*in_period)
            for names in (self._elements(ReportRow.missing), self._elements(ReportRow.unmeasured))
        ]
        incomplete = select(ReportRow.id.label("report"), null().label("metric")).where(
            *in_period,
            or_(ReportRow.partial, func.json_array_length(ReportRow.unmeasured) > 0),
        )
        rows = union_all(*listed, incomplete).subquery()
        statement = select(rows.c.metric, func.count(rows.c.report.distinct())).group_by(
            rows.c.metric
        )
        async with self._session() as session:
            counts = {m: int(n) for m, n in (await session.execute(statement)).all()}
        return IncompleteWindows(counts.pop(None, 0), {str(m): n for m, n in counts.items()})

    def _elements(self, column: InstrumentedAttribute[list[str]]) -> Any:
        """The text elements of a JSON array column, as a table joined to its row."""
        if self._engine.dialect.name == "postgresql":
            return func.json_array_elements_text(column).table_valued("value").render_derived()
        return func.json_each(column).table_valued("value")

    async def count(self) -> int:
        async with self._session() as session:
            return int((await session.execute(select(func.count(ReportRow.id)))).scalar_one())

    async def ping(self) -> None:
        async with self._session() as session:
            await session.execute(text("SELECT 1"))
