"""Each billing-edge test runs on a SQLite file and on PostgreSQL, in every forwarding mode,
against a recorded Stripe sandbox on a manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from common.clock import ManualClock
from tests.support.billing_edges import MODES, PERIOD_REFRESH
from tests.support.forwarding import (
    Harness,
    WebhookFeed,
    harness,
)
from tests.support.stripe_sandbox import START, Sandbox
from tests.support.usage_recorder import UsageRecorder, recorded_sandbox


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite+aiosqlite:///{tmp_path / 'periods.db'}"


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def recorded(clock: ManualClock) -> Iterator[tuple[Sandbox, UsageRecorder]]:
    with recorded_sandbox(clock) as pair:
        yield pair


@pytest.fixture
def sandbox(recorded: tuple[Sandbox, UsageRecorder]) -> Sandbox:
    return recorded[0]


@pytest.fixture
def recorder(recorded: tuple[Sandbox, UsageRecorder]) -> UsageRecorder:
    return recorded[1]


@pytest.fixture
async def h(
    sandbox: Sandbox, clock: ManualClock, database_url: str, mode: str
) -> AsyncIterator[Harness]:
    async with harness(
        sandbox.url,
        clock,
        database_url,
        mode,
        feed=WebhookFeed(sandbox),
        stripe_period_refresh=PERIOD_REFRESH,
    ) as opened:
        yield opened
