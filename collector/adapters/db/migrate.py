"""Alembic migrations, run programmatically so `serve` and `db upgrade` share one code path.

The schema is *migrated* when its revision is this version's head, or one this version does
not know: a newer collector has upgraded it during a rolling deploy, and migrations only add,
so this one keeps working. A missing or older revision is not migrated: every command but
`db upgrade` and `serve` refuses it with :class:`DatabaseNotMigrated`, and readiness fails.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from collector.adapters.db.engine import connection_to, create_engine
from collector.errors import DatabaseNotMigrated

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
UPGRADE_HINT = "run usage-collector db upgrade"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = url
    return config


@functools.cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config("sqlite://"))


def head_revision() -> str:
    head = _script().get_current_head()
    assert head is not None
    return head


@dataclass(frozen=True)
class SchemaState:
    """The database's revision beside this version's head."""

    current: str | None
    head: str

    @property
    def known(self) -> bool:
        """This version has a migration with the current revision."""
        return self.current is not None and self.current in _known_revisions()

    @property
    def migrated(self) -> bool:
        return self.current == self.head or (self.current is not None and not self.known)

    def describe(self) -> str:
        if self.current == self.head:
            return f"at head {self.head}"
        if self.current is None:
            return f"not migrated (no revision, head is {self.head}): {UPGRADE_HINT}"
        if not self.known:
            return f"revision {self.current} is newer than this version's head {self.head}"
        return f"not migrated (revision {self.current}, head is {self.head}): {UPGRADE_HINT}"


@functools.cache
def _known_revisions() -> frozenset[str]:
    return frozenset(revision.revision for revision in _script().walk_revisions())


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def schema_state(engine: AsyncEngine) -> SchemaState:
    """The schema's state; an unreachable database raises ``DatabaseUnavailable``."""
    async with connection_to(engine) as connection:
        current = await connection.run_sync(_current)
    return SchemaState(current, head_revision())


async def require_migrated(engine: AsyncEngine) -> SchemaState:
    """The schema's state, or ``DatabaseNotMigrated`` when the tables are missing or old."""
    state = await schema_state(engine)
    if not state.migrated:
        raise DatabaseNotMigrated(f"database not migrated: {UPGRADE_HINT}")
    return state


async def schema_state_of(url: str) -> SchemaState:
    """:func:`schema_state` through an engine of its own."""
    engine = create_engine(url)
    try:
        return await schema_state(engine)
    finally:
        await engine.dispose()


async def current_revision(url: str) -> str | None:
    return (await schema_state_of(url)).current


@dataclass(frozen=True)
class Upgrade:
    before: str | None
    after: str | None


def upgrade(url: str, revision: str = "head") -> Upgrade:
    """Apply migrations up to ``revision``; blocking, call from a thread inside an event loop.

    The database is reached once first, so an unreachable one is reported as such (naming the
    URL) rather than as whatever Alembic's connection attempt happens to raise.
    """
    before = asyncio.run(current_revision(url))
    command.upgrade(alembic_config(url), revision)
    return Upgrade(before, asyncio.run(current_revision(url)))


async def upgrade_async(url: str, revision: str = "head") -> Upgrade:
    return await asyncio.to_thread(upgrade, url, revision)
