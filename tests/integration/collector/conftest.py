from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.collector import RunningCollector, run_collector


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each collector test runs on the embedded SQLite file and on a real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'usage.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def collector(database_url: str) -> Iterator[RunningCollector]:
    with run_collector(database_url) as running:
        yield running
