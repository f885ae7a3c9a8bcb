"""The durable spool: reports waiting for the collector, oldest window first, in the state file.

A row is written before its report is first sent and deleted only after the collector took it.
``attempts`` is persisted *before* each send, so a report that may have reached the collector is
known as such after any crash; the compaction service never folds such a report. Reports the
collector refused for good are moved to ``dead_reports`` and kept, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from agent.adapters.state_db import StateDb, timestamp
from common.schema import UsageReport


@dataclass(frozen=True)
class SpoolEntry:
    """One waiting report, the scrape baselines around it, and its send history."""

    seq: int
    report: UsageReport
    state_before: str | None
    state_after: str | None
    attempts: int
    next_attempt_at: datetime
    windows: int

    @property
    def ever_sent(self) -> bool:
        return self.attempts > 0


_SELECT = (
    "SELECT seq, body, state_before, state_after, attempts, next_attempt_at, windows FROM spool"
)


def _entry(row: tuple[object, ...]) -> SpoolEntry:
    seq, body, before, after, attempts, next_at, windows = row
    return SpoolEntry(
        seq=int(str(seq)),
        report=UsageReport.model_validate_json(str(body)),
        state_before=None if before is None else str(before),
        state_after=None if after is None else str(after),
        attempts=int(str(attempts)),
        next_attempt_at=datetime.fromisoformat(str(next_at)),
        windows=int(str(windows)),
    )


class Spool:
    """Rows of the ``spool`` table; every method is one statement or runs in a transaction."""

    def __init__(self, db: StateDb) -> None:
        self._db = db

    def add(
        self,
        report: UsageReport,
        *,
        now: datetime,
        state_before: str | None = None,
        state_after: str | None = None,
        attempts: int = 0,
        windows: int = 1,
    ) -> bool:
        """Insert a report; ``False`` if one with the same ``report_id`` is already waiting."""
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO spool (report_id, window_start, window_end, body, state_before,"
            " state_after, attempts, next_attempt_at, windows, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                str(report.id),
                timestamp(report.window_start),
                timestamp(report.window_end),
                report.to_json(),
                state_before,
                state_after,
                attempts,
                timestamp(now),
                windows,
                timestamp(now),
            ),
        )
        return cursor.rowcount == 1

    def depth(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM spool").fetchone()[0])

    def dead_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM dead_reports").fetchone()[0])

    def head(self) -> SpoolEntry | None:
        """The waiting report with the oldest window."""
        entries = self.oldest(1)
        return entries[0] if entries else None

    def oldest(self, limit: int) -> list[SpoolEntry]:
        rows = self._db.execute(
            _SELECT + " ORDER BY window_start, seq LIMIT ?", (limit,)
        ).fetchall()
        return [_entry(row) for row in rows]

    def oldest_window_end(self) -> datetime | None:
        row = self._db.execute("SELECT min(window_end) FROM spool").fetchone()
        return None if row[0] is None else datetime.fromisoformat(row[0])

    def mark_attempt(self, seq: int, next_attempt_at: datetime) -> None:
        """Record a send attempt before it is made, and when the next one may follow."""
        self._db.execute(
            "UPDATE spool SET attempts = attempts + 1, next_attempt_at = ? WHERE seq = ?",
            (timestamp(next_attempt_at), seq),
        )

    def reschedule(self, seq: int, next_attempt_at: datetime) -> None:
        self._db.execute(
            "UPDATE spool SET next_attempt_at = ? WHERE seq = ?", (timestamp(next_attempt_at), seq)
        )

    def remove(self, seq: int) -> None:
        self._db.execute("DELETE FROM spool WHERE seq = ?", (seq,))

    def bury(self, entry: SpoolEntry, *, reason: str, status: int | None, now: datetime) -> None:
        """Move a report the collector refused for good to ``dead_reports`` (kept, not sent)."""
        with self._db.transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO dead_reports (report_id, body, reason, status, buried_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (str(entry.report.id), entry.report.to_json(), reason, status, timestamp(now)),
            )
            self.remove(entry.seq)

    def replace(
        self,
        entries: list[SpoolEntry],
        report: UsageReport,
        *,
        now: datetime,
    ) -> None:
        """Swap ``entries`` for one compacted report covering their windows, atomically."""
        with self._db.transaction():
            for entry in entries:
                self.remove(entry.seq)
            self.add(
                report,
                now=now,
                state_before=entries[0].state_before,
                state_after=entries[-1].state_after,
                windows=sum(e.windows for e in entries),
            )

    def clear(self) -> int:
        """Delete every waiting report (leader takeover); returns how many there were."""
        return self._db.execute("DELETE FROM spool").rowcount
