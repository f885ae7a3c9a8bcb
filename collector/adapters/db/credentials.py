"""The credential store: ingest tokens and operator keys, found by the hash of their secret."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from collector.adapters.db.tables import CREDENTIALS
from collector.errors import DatabaseUnavailable


@dataclass(frozen=True)
class Credential:
    """A credential as stored, without its secret (only the hash is ever stored)."""

    id: str
    kind: str
    role: str | None
    customer_id: str | None
    name: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def _credential(mapping: Any) -> Credential:
    values = dict(mapping)
    values.pop("secret_hash", None)
    return Credential(**values)


class CredentialStore:
    """Reads and writes ``credentials``; database errors leave as ``DatabaseUnavailable``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._engine.begin() as conn:
                yield conn
        except (SQLAlchemyError, OSError) as exc:
            raise DatabaseUnavailable(
                f"the database is unavailable ({type(exc).__name__})"
            ) from exc

    async def add(self, credential: Credential, secret_hash: str) -> None:
        values = {**vars(credential), "secret_hash": secret_hash}
        async with self._begin() as conn:
            await conn.execute(insert(CREDENTIALS).values(values))

    async def by_hash(self, secret_hash: str) -> Credential | None:
        query = select(CREDENTIALS).where(CREDENTIALS.c.secret_hash == secret_hash)
        async with self._begin() as conn:
            row = (await conn.execute(query)).first()
        return _credential(row._mapping) if row is not None else None

    async def by_id(self, credential_id: str, kind: str) -> Credential | None:
        query = select(CREDENTIALS).where(
            CREDENTIALS.c.id == credential_id, CREDENTIALS.c.kind == kind
        )
        async with self._begin() as conn:
            row = (await conn.execute(query)).first()
        return _credential(row._mapping) if row is not None else None

    async def list(self, kind: str, customer_id: str | None = None) -> list[Credential]:
        """Credentials of ``kind`` (optionally of one customer), oldest first."""
        query = select(CREDENTIALS).where(CREDENTIALS.c.kind == kind)
        if customer_id is not None:
            query = query.where(CREDENTIALS.c.customer_id == customer_id)
        async with self._begin() as conn:
            rows = (await conn.execute(query.order_by(CREDENTIALS.c.created_at))).all()
        return [_credential(row._mapping) for row in rows]

    async def revoke(self, credential_id: str, kind: str, when: datetime) -> Credential | None:
        """Mark a credential revoked (a second revoke keeps the first time); None if unknown."""
        async with self._begin() as conn:
            await conn.execute(
                update(CREDENTIALS)
                .where(
                    CREDENTIALS.c.id == credential_id,
                    CREDENTIALS.c.kind == kind,
                    CREDENTIALS.c.revoked_at.is_(None),
                )
                .values(revoked_at=when)
            )
        return await self.by_id(credential_id, kind)

    async def touch(self, last_used: Mapping[str, datetime]) -> None:
        """Record when credentials were last used; one short transaction for all of them."""
        if not last_used:
            return
        async with self._begin() as conn:
            for credential_id, when in last_used.items():
                await conn.execute(
                    update(CREDENTIALS)
                    .where(CREDENTIALS.c.id == credential_id)
                    .values(last_used_at=when)
                )
