"""Authentication: a bearer secret becomes a principal, with a short cache and cheap bookkeeping.

Ingest throughput matters, so a checked credential is remembered for ``cache_ttl`` seconds and
its ``last_used_at`` is written at most once per ``touch_interval``, in the background, never on
the request's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from datetime import datetime

import structlog

from collector.adapters.db.credentials import Credential, CredentialStore
from collector.errors import CollectorError, Unauthorized
from collector.services.credentials import hash_secret
from collector.services.principals import ANONYMOUS, Kind, Principal, Role
from common.clock import Clock

log = structlog.get_logger("collector.auth")
MAX_SECRET_LENGTH = 256
_SECRET_CHARACTERS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/="
)


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
        or not set(secret) <= _SECRET_CHARACTERS
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
        self._cache_ttl = cache_ttl
        self._touch_interval = touch_interval
        self._max_cached = max_cached
        self._cache: dict[str, tuple[Credential | None, float]] = {}
        self._touched: dict[str, float] = {}
        self._pending: dict[str, datetime] = {}
        self._flush: asyncio.Task[None] | None = None
        self._lookups: dict[str, asyncio.Future[Credential | None]] = {}
        self._generation = 0

    async def authenticate(self, authorization: str | None) -> Principal:
        if self.disabled:
            return ANONYMOUS
        digest = hash_secret(bearer_secret(authorization))
        now = self._clock.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            credential = cached[0]
        else:
            credential = await self._look_up(digest, now)
        if credential is None or credential.revoked:
            raise Unauthorized("unknown or revoked credential", field="authorization")
        self._note_use(credential.id, now)
        return principal_of(credential)

    async def _look_up(self, digest: str, now: float) -> Credential | None:
        """One database read per secret at a time: requests that miss the cache together share it.

        When a credential's cache entry lapses under load, every request in flight with it would
        otherwise read the database at once, and each beyond the pool opened a connection.
        """
        pending = self._lookups.get(digest)
        if pending is None:
            pending = asyncio.ensure_future(self._store.by_hash(digest))
            self._lookups[digest] = pending
            remember = functools.partial(self._looked_up, digest, now, self._generation)
            pending.add_done_callback(remember)
        return await asyncio.shield(pending)

    def _looked_up(
        self, digest: str, now: float, generation: int, done: asyncio.Future[Credential | None]
    ) -> None:
        self._lookups.pop(digest, None)
        if done.cancelled() or done.exception() is not None or generation != self._generation:
            return
        if self._cache_ttl > 0:
            if len(self._cache) >= self._max_cached:
                self._cache.clear()
            self._cache[digest] = (done.result(), now + self._cache_ttl)

    def forget(self) -> None:
        """Drop every remembered credential, so a revocation takes effect at once.

        A read already under way is not remembered either: it may predate the revocation.
        """
        self._cache.clear()
        self._generation += 1

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
