"""Real Prometheus servers for the agent's integration tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

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
