"""Real Prometheus servers for the agent's integration tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.integration.agent.real_collector import sqlite_collector
from tests.support.collector import RunningCollector
from tests.support.prometheus import running_prometheus


@pytest.fixture(scope="module")
def prometheus_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[str], str]]:
    """Start a Prometheus backfilled with OpenMetrics text; returns its URL. Stopped per module."""
    with ExitStack() as stack:

        def start(openmetrics: str) -> str:
            workdir = tmp_path_factory.mktemp("prometheus")
            return stack.enter_context(running_prometheus(workdir, openmetrics)).url

        yield start


@pytest.fixture
def real_collector(tmp_path: Path) -> Iterator[RunningCollector]:
    """The real collector on SQLite (started outside the test's event loop)."""
    with sqlite_collector(tmp_path) as running:
        yield running
