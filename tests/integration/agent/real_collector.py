"""The real collector on SQLite for agent tests: what it stores is the billing truth."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from collector.settings import CollectorSettings
from tests.support.collector import RunningCollector, run_collector


@contextmanager
def sqlite_collector(directory: Path) -> Iterator[RunningCollector]:
    overrides: dict[str, Any] = {}
    if "auth_disabled" in CollectorSettings.model_fields:
        overrides["auth_disabled"] = True  # the agent tests are about delivery, not tokens
    with run_collector(f"sqlite+aiosqlite:///{directory / 'usage.db'}", **overrides) as running:
        yield running


def stored_reports(collector: RunningCollector, customer_id: str) -> list[dict[str, Any]]:
    """Every report the collector stored for the customer, oldest window first."""
    reports: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 500}
        if cursor:
            params["cursor"] = cursor
        page = httpx.get(f"{collector.url}/api/usage/{customer_id}", params=params).json()
        reports.extend(page["reports"])
        cursor = page.get("next_cursor")
        if not cursor:
            break
    return sorted(reports, key=lambda r: r["window_start"])
