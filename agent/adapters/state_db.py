"""The agent's state file: one SQLite database holding the spool, the watermark and baselines.

Everything that must survive a restart lives here, so a report, the counter baselines it was
measured against and the watermark that says its window is done are written in one transaction:
after a crash either all of them are on disk or none is. The file is opened in WAL mode with
``synchronous=FULL`` so a committed transaction survives a power cut, not only a process crash.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from agent.errors import StateError
from common.windows import as_utc

FILE_NAME = "agent-state.db"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    report_id TEXT NOT NULL UNIQUE,
    window_start TEXT NOT NULL,
    window_end TEXT NOT NULL,
    body TEXT NOT NULL,
    state_before TEXT,
    state_after TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    windows INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS spool_by_window ON spool (window_start);
CREATE TABLE IF NOT EXISTS dead_reports (
    report_id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    reason TEXT NOT NULL,
    status INTEGER,
    buried_at TEXT NOT NULL
);
"""

WATERMARK = "watermark"
SCRAPE_BASELINES = "scrape_baselines"
LEASE_EPOCH = "lease_epoch"
BILLING_BOUNDARIES = "billing_boundaries"
# One row per Prometheus counter metric: ``counter_baselines:<metric>``.
COUNTER_BASELINES = "counter_baselines"


def timestamp(moment: datetime) -> str:
    """A UTC timestamp that sorts as text in time order."""
    return as_utc(moment).isoformat(timespec="microseconds")


class StateDb:
    """One SQLite connection to ``agent-state.db``; callers group writes with ``transaction``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE.
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA busy_timeout=5000")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StateError(f"{path} was written by a newer agent (schema {version})")
            self._conn.executescript(_SCHEMA)
            self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise StateError(f"cannot open the state file {path}: {exc}") from exc
        self._depth = 0

    @classmethod
    def in_dir(cls, state_dir: Path) -> StateDb:
        return cls(state_dir / FILE_NAME)

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes: all commit together or none does. Nested use joins the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StateError(f"cannot write {self.path}: {exc}") from exc
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self._conn.execute("ROLLBACK")
            raise
        self._depth = 0
        try:
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StateError(f"cannot commit to {self.path}: {exc}") from exc

    def execute(self, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Cursor:
        """Run one statement; SQLite failures become ``StateError``."""
        try:
            return self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise StateError(f"state file {self.path}: {exc}") from exc

    def get(self, key: str) -> str | None:
        row = self.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, key: str, value: str | None) -> None:
        if value is None:
            self.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            self.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def watermark(self) -> datetime | None:
        """The end of the newest window whose report is safely in the spool."""
        value = self.get(WATERMARK)
        return None if value is None else datetime.fromisoformat(value)

    def set_watermark(self, moment: datetime) -> None:
        self.put(WATERMARK, timestamp(moment))
