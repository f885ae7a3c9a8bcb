"""Alembic environment: async engines, URL handed in through the config's attributes."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from collector.adapters.db.engine import create_engine
from collector.adapters.db.tables import Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    url = context.config.attributes["database_url"]
    asyncio.run(_run_async(url))


run_migrations_online()
