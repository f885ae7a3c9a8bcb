"""Every collector duration setting: a bare number is seconds, units work, and the minimum holds.

The agent's table is in ``tests/unit/agent/test_settings.py``; both components read a bare
number the same way, so ``COLLECTOR_STRIPE_TIMEOUT=30`` and ``AGENT_HTTP_TIMEOUT=30`` agree.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from collector.settings import CollectorSettings
from common.windows import format_duration

# (variable, field, a value under its minimum, how the default prints in docs/configuration.md)
DURATIONS = [
    ("COLLECTOR_LEGACY_WINDOW", "legacy_window", "0", "1h"),
    ("COLLECTOR_STRIPE_TIMEOUT", "stripe_timeout", "0", "30s"),
    ("COLLECTOR_STRIPE_BACKOFF_CAP", "stripe_backoff_cap", "0", "5m"),
    ("COLLECTOR_STRIPE_LEASE", "stripe_lease", "0", "15s"),
    ("COLLECTOR_STRIPE_LEASE_RENEWAL", "stripe_lease_renewal", "0", "5s"),
    ("COLLECTOR_LEADER_CHECK", "leader_check", "0", "5s"),
    ("COLLECTOR_STRIPE_PERIOD_REFRESH", "stripe_period_refresh", "0", "5m"),
    ("COLLECTOR_FORWARDER_IDLE_SLEEP", "forwarder_idle_sleep", "0", "1s"),
    ("COLLECTOR_AUTH_CACHE_TTL", "auth_cache_ttl", "-1", "10s"),
    ("COLLECTOR_AUTH_LAST_USED_INTERVAL", "auth_last_used_interval", "-1", "1m"),
    ("COLLECTOR_BODY_READ_TIMEOUT", "body_read_timeout", "0", "30s"),
    ("COLLECTOR_HEADER_READ_TIMEOUT", "header_read_timeout", "0", "10s"),
    ("COLLECTOR_RECONCILE_INTERVAL", "reconcile_interval", "-1", "15m"),
    ("COLLECTOR_RECONCILE_SETTLE", "reconcile_settle", "-1", "5m"),
    ("COLLECTOR_CONSOLE_SESSION_LIFETIME", "console_session_lifetime", "0", "8h"),
    ("COLLECTOR_CONSOLE_REFRESH", "console_refresh", "-1", "30s"),
]
IDS = [row[0] for row in DURATIONS]
# The lease must be at least twice its renewal, so the longer renewals below keep that true.
ROOM = {"COLLECTOR_STRIPE_LEASE": "2h"}


def seconds(settings: CollectorSettings, field: str) -> float:
    value = getattr(settings, field)
    return value.total_seconds() if isinstance(value, timedelta) else value


def load(monkeypatch: pytest.MonkeyPatch, env: str, raw: str) -> CollectorSettings:
    monkeypatch.setenv(env, raw)
    if env == "COLLECTOR_STRIPE_LEASE_RENEWAL":
        monkeypatch.setenv("COLLECTOR_STRIPE_LEASE", "2h")
    return CollectorSettings()


def test_every_duration_setting_is_in_the_table():
    fields = {
        name
        for name, field in CollectorSettings.model_fields.items()
        if "duration" in (field.description or "")
    }
    assert fields == {row[1] for row in DURATIONS}


@pytest.mark.parametrize(("env", "field", "under", "default"), DURATIONS, ids=IDS)
def test_a_bare_number_is_seconds(monkeypatch, env, field, under, default):
    assert seconds(load(monkeypatch, env, "45"), field) == 45


@pytest.mark.parametrize(("env", "field", "under", "default"), DURATIONS, ids=IDS)
def test_units_are_read(monkeypatch, env, field, under, default):
    assert seconds(load(monkeypatch, env, "1m30s"), field) == 90


@pytest.mark.parametrize(("env", "field", "under", "default"), DURATIONS, ids=IDS)
def test_a_value_under_the_minimum_names_the_setting(monkeypatch, env, field, under, default):
    with pytest.raises(ValidationError) as caught:
        load(monkeypatch, env, under)

    assert field in str(caught.value)


@pytest.mark.parametrize(("env", "field", "under", "default"), DURATIONS, ids=IDS)
def test_the_default_prints_as_a_duration_the_parser_reads_back(
    monkeypatch, env, field, under, default
):
    value = CollectorSettings.model_fields[field].default
    as_delta = value if isinstance(value, timedelta) else timedelta(seconds=value)

    assert format_duration(as_delta) == default
    assert seconds(load(monkeypatch, env, default), field) == as_delta.total_seconds()
