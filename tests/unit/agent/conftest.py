"""Unit-test isolation: no agent setting leaks in from the environment running the tests."""

from __future__ import annotations

import os

import pytest

SEED_NAMES = ("ENABLE_USAGE_REPORTING", "CUSTOMER_ID", "INSTANCE_ID", "BILLING_API_URL")


@pytest.fixture(autouse=True)
def clean_agent_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("AGENT_") or name.upper() in SEED_NAMES:
            monkeypatch.delenv(name)
    monkeypatch.delenv("COLLECTION_INTERVAL", raising=False)
