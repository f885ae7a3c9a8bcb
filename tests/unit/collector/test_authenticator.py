"""The authenticator: bearer parsing, refusals, its cache and last-use bookkeeping."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime

import pytest

from collector.adapters.db.credentials import Credential
from collector.errors import Unauthorized
from collector.services.auth import Authenticator
from collector.services.credentials import hash_secret
from collector.services.principals import Kind
from common.clock import ManualClock

START = datetime(2026, 1, 1, tzinfo=UTC)


class FakeStore:
    def __init__(self) -> None:
        self.by_digest: dict[str, Credential] = {}
        self.lookups = 0
        self.touches: list[dict[str, datetime]] = []

    def add(self, secret: str, **changes: object) -> Credential:
        values: dict[str, object] = dict(
            id="tok_1",
            kind="ingest",
            role=None,
            customer_id="cust_1",
            name=None,
            created_at=START,
            last_used_at=None,
            revoked_at=None,
        )
        values.update(changes)
        credential = Credential(**values)  # type: ignore[arg-type]
        self.by_digest[hash_secret(secret)] = credential
        return credential

    async def by_hash(self, digest: str) -> Credential | None:
        self.lookups += 1
        return self.by_digest.get(digest)

    async def touch(self, last_used: Mapping[str, datetime]) -> None:
        self.touches.append(dict(last_used))


def make(store: FakeStore, clock: ManualClock, **options: float) -> Authenticator:
    return Authenticator(
        store,  # type: ignore[arg-type]
        clock,
        cache_ttl=options.get("cache_ttl", 10.0),
        touch_interval=options.get("touch_interval", 60.0),
    )


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Bearer   ", "Token abc123", "Bearer a b", "Bearer \x00abc"]
)
async def test_malformed_headers_are_401(header: str | None) -> None:
    authenticator = make(FakeStore(), ManualClock(START))
    with pytest.raises(Unauthorized):
        await authenticator.authenticate(header)


async def test_unknown_and_revoked_credentials_are_401() -> None:
    store = FakeStore()
    store.add("umt_revoked-secret", revoked_at=START)
    authenticator = make(store, ManualClock(START))
    for secret in ("umt_unknown-secret", "umt_revoked-secret"):
        with pytest.raises(Unauthorized):
            await authenticator.authenticate(f"Bearer {secret}")


async def test_a_token_becomes_its_customers_principal() -> None:
    store = FakeStore()
    store.add("umt_good-secret")
    principal = await make(store, ManualClock(START)).authenticate("bearer umt_good-secret")
    assert principal.kind is Kind.INGEST
    assert principal.customer_id == "cust_1"


async def test_last_use_is_written_at_most_once_per_interval() -> None:
    store = FakeStore()
    store.add("umt_busy-secret")
    clock = ManualClock(START)
    authenticator = make(store, clock)
    for _ in range(500):
        await authenticator.authenticate("Bearer umt_busy-secret")
        clock.advance(0.01)
    await authenticator.close()
    assert store.touches == [{"tok_1": START}]
    clock.advance(60)
    await authenticator.authenticate("Bearer umt_busy-secret")
    await authenticator.close()
    assert len(store.touches) == 2


async def test_the_cache_spares_the_database_until_it_expires_or_is_forgotten() -> None:
    store = FakeStore()
    store.add("umt_cached-secret")
    clock = ManualClock(START)
    authenticator = make(store, clock, cache_ttl=10.0)
    for _ in range(100):
        await authenticator.authenticate("Bearer umt_cached-secret")
    assert store.lookups == 1
    clock.advance(10)
    await authenticator.authenticate("Bearer umt_cached-secret")
    assert store.lookups == 2
    store.add("umt_cached-secret", revoked_at=START)
    authenticator.forget()
    with pytest.raises(Unauthorized):
        await authenticator.authenticate("Bearer umt_cached-secret")
    await asyncio.sleep(0)


class SlowStore(FakeStore):
    """Each read sees the credential as it starts, then waits until the test lets it finish."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def by_hash(self, digest: str) -> Credential | None:
        self.lookups += 1
        found = self.by_digest.get(digest)
        self.started.set()
        await self.release.wait()
        return found


def test_requests_that_miss_the_cache_together_share_one_read() -> None:
    async def run() -> None:
        store = SlowStore()
        store.add("usg_tok_shared")
        auth = make(store, ManualClock(START))
        waiting = [
            asyncio.create_task(auth.authenticate("Bearer usg_tok_shared")) for _ in range(32)
        ]
        await asyncio.sleep(0)
        store.release.set()
        principals = await asyncio.gather(*waiting)
        assert {p.credential_id for p in principals} == {"tok_1"}
        assert store.lookups == 1
        await auth.authenticate("Bearer usg_tok_shared")
        assert store.lookups == 1
        await auth.close()

    asyncio.run(run())


def test_a_read_under_way_when_credentials_are_forgotten_is_not_remembered() -> None:
    async def run() -> None:
        store = SlowStore()
        store.add("usg_tok_revoked")
        auth = make(store, ManualClock(START))
        before = asyncio.create_task(auth.authenticate("Bearer usg_tok_revoked"))
        await store.started.wait()
        store.add("usg_tok_revoked", revoked_at=START)
        auth.forget()
        store.release.set()
        await before
        with pytest.raises(Unauthorized):
            await auth.authenticate("Bearer usg_tok_revoked")
        assert store.lookups == 2
        await auth.close()

    asyncio.run(run())


def test_a_failed_read_is_shared_and_not_remembered() -> None:
    class BrokenStore(SlowStore):
        async def by_hash(self, digest: str) -> Credential | None:
            self.lookups += 1
            await self.release.wait()
            raise RuntimeError("database gone")

    async def run() -> None:
        store = BrokenStore()
        auth = make(store, ManualClock(START))
        waiting = [asyncio.create_task(auth.authenticate("Bearer usg_tok_x")) for _ in range(3)]
        await asyncio.sleep(0)
        store.release.set()
        results = await asyncio.gather(*waiting, return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in results)
        assert store.lookups == 1
        with pytest.raises(RuntimeError):
            await auth.authenticate("Bearer usg_tok_x")
        assert store.lookups == 2

    asyncio.run(run())
