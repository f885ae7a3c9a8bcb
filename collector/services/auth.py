"""Authentication: a bearer secret becomes a principal, with a short cache and cheap bookkeeping.

Ingest throughput matters, so a checked credential is remembered for ``cache_ttl`` seconds and
its ``last_used_at`` is written at most once per ``touch_interval``, in the background, never on
the request's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from datetime import datetime

import structlog

from collector.adapters.db.credentials import Credential, CredentialStore
from collector.errors import CollectorError, Unauthorized
from collector.services.credentials import hash_secret
from collector.services.principals import ANONYMOUS, Kind, Principal, Role
from collector.services.read_cache import ReadCache
from common.clock import Clock

log = structlog.get_logger("collector.auth")
MAX_SECRET_LENGTH = 256
_SECRET = re.compile(r"[A-Za-z0-9\-._~+/=]+")
"""The characters a bearer secret may hold (base64, URL-safe base64 and RFC 6750's token68)."""


def bearer_secret(authorization: str | None) -> str:
    """The secret of an ``Authorization: Bearer <secret>`` header, or ``Unauthorized``."""
    if not authorization:
        raise Unauthorized("an Authorization: Bearer credential is required", field="authorization")
    scheme, _, secret = authorization.strip().partition(" ")
    secret = secret.strip()
    if (
        scheme.lower() != "bearer"
        or not secret
        or len(secret) > MAX_SECRET_LENGTH
        or _SECRET.fullmatch(secret) is None
    ):
        raise Unauthorized(
            "the Authorization header is not a bearer credential", field="authorization"
        )
    return secret


def principal_of(credential: Credential) -> Principal:
    kind = Kind(credential.kind)
    return Principal(
        credential_id=credential.id,
        kind=kind,
        role=Role(credential.role) if credential.role else None,
        customer_id=credential.customer_id,
    )


class Authenticator:
    """Turns ``Authorization`` headers into principals; refuses unknown and revoked credentials."""

    def __init__(
        self,
        store: CredentialStore,
        clock: Clock,
        *,
        cache_ttl: float,
        touch_interval: float,
        disabled: bool = False,
        max_cached: int = 10_000,
    ) -> None:
        self.disabled = disabled
        self._store = store
        self._clock = clock
        self._touch_interval = touch_interval
        self._credentials: ReadCache[str, tuple[Credential, Principal] | None] = ReadCache(
            self._read, clock, ttl=cache_ttl, max_entries=max_cached
        )
        self._touched: dict[str, float] = {}
        self._pending: dict[str, datetime] = {}
        self._flush: asyncio.Task[None] | None = None

    async def authenticate(self, authorization: str | None) -> Principal:
        if self.disabled:
            return ANONYMOUS
        digest = hash_secret(bearer_secret(authorization))
        now = self._clock.monotonic()
        known = await self._credentials.get(digest)
        if known is None or known[0].revoked:
            raise Unauthorized("unknown or revoked credential", field="authorization")
        self._note_use(known[0].id, now)
        return known[1]

    async def _read(self, digest: str) -> tuple[Credential, Principal] | None:
        """The credential and the principal it gives, remembered together."""
        credential = await self._store.by_hash(digest)
        return None if credential is None else (credential, principal_of(credential))

    def forget(self) -> None:
        """Drop every remembered credential, so a revocation takes effect at once.

        A read already under way is not remembered either: it may predate the revocation.
        """
        self._credentials.forget()

    def _note_use(self, credential_id: str, now: float) -> None:
        last = self._touched.get(credential_id)
        if last is not None and now - last < self._touch_interval:
            return
        self._touched[credential_id] = now
        self._pending[credential_id] = self._clock.now()
        if self._flush is None or self._flush.done():
            self._flush = asyncio.get_running_loop().create_task(self._write_pending())

    async def _write_pending(self) -> None:
        while self._pending:
            pending, self._pending = self._pending, {}
            try:
                await self._store.touch(pending)
            except CollectorError as exc:
                log.warning("could not record credential use", error=exc.detail)

    async def close(self) -> None:
        """Finish writing last-use times."""
        if self._flush is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._flush
