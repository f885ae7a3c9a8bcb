"""Agent settings: the fixed AGENT_ names, the seed's names, durations and secret files."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.cli.wiring import check_collector_url
from agent.errors import ConfigurationError
from agent.settings import AgentSettings, load_settings, setting_errors
from common.windows import format_duration


def test_defaults():
    settings = load_settings()

    assert settings.enabled is True
    assert settings.interval == timedelta(hours=1)
    assert settings.mqtt_messages_query == "mqtt_messages_received_total"
    assert settings.storage_bytes_query == "sum(kubelet_volume_stats_used_bytes)"
    assert settings.api_requests_query is None
    assert settings.active_status_set == {"active", "online"}
    assert settings.device_page_limit == 1000
    assert settings.state_dir == Path("./agent-state")
    assert settings.query_offset is None
    assert settings.effective_query_offset == timedelta(seconds=15)
    assert settings.effective_jitter == timedelta(minutes=6)
    assert settings.max_catchup == timedelta(days=7)
    assert settings.partial_after == timedelta(hours=1)
    assert settings.spool_max_reports == 1000
    assert settings.leader_election is False
    assert settings.lease_name == "usage-agent"
    assert settings.test_crash_at is None
    assert settings.scrape_interval == timedelta(seconds=15)
    assert settings.baseline_lookback == timedelta(days=1)
    assert settings.http_timeout == timedelta(seconds=10)
    assert settings.metrics_port == 9102
    assert settings.log_level == "info"


def test_every_field_documents_its_unit():
    for name, field in AgentSettings.model_fields.items():
        assert field.description, name
        assert "(" in field.description, name


def test_seed_names_are_accepted(monkeypatch):
    monkeypatch.setenv("ENABLE_USAGE_REPORTING", "false")
    monkeypatch.setenv("CUSTOMER_ID", "cust-1")
    monkeypatch.setenv("INSTANCE_ID", "inst-1")
    monkeypatch.setenv("BILLING_API_URL", "http://billing:3100")
    monkeypatch.setenv("COLLECTION_INTERVAL", "3600000")

    settings = load_settings()

    assert settings.enabled is False
    assert (settings.customer_id, settings.instance_id) == ("cust-1", "inst-1")
    assert settings.collector_url == "http://billing:3100"
    assert settings.interval == timedelta(hours=1)


def test_agent_names_win_over_seed_names(monkeypatch):
    monkeypatch.setenv("CUSTOMER_ID", "seed")
    monkeypatch.setenv("AGENT_CUSTOMER_ID", "agent")
    monkeypatch.setenv("AGENT_INTERVAL", "30m")

    settings = load_settings()

    assert settings.customer_id == "agent"
    assert settings.interval == timedelta(minutes=30)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("15s", timedelta(seconds=15)),
        ("1h30m", timedelta(minutes=90)),
        ("900", timedelta(minutes=15)),
    ],
)
def test_interval_forms(monkeypatch, raw, expected):
    monkeypatch.setenv("AGENT_INTERVAL", raw)

    assert load_settings().interval == expected


@pytest.mark.parametrize("raw", ["soon", "0", "-5m", "1ms", "0.5"])
def test_bad_interval_is_refused(monkeypatch, raw):
    monkeypatch.setenv("AGENT_INTERVAL", raw)

    with pytest.raises(ValidationError):
        load_settings()


def test_secrets_come_from_files(tmp_path, monkeypatch):
    (tmp_path / "agent_collector_token").write_text("s3cret")
    (tmp_path / "agent_device_api_token").write_text("dev-token")
    monkeypatch.setenv("AGENT_CUSTOMER_ID", "c")

    settings = load_settings(tmp_path)

    assert settings.collector_token is not None
    assert settings.collector_token.get_secret_value() == "s3cret"
    assert settings.device_api_token is not None
    assert settings.device_api_token.get_secret_value() == "dev-token"
    assert "s3cret" not in repr(settings)


def test_blank_optional_values_are_unset(monkeypatch):
    monkeypatch.setenv("AGENT_API_REQUESTS_QUERY", "")
    monkeypatch.setenv("AGENT_PROMETHEUS_URL", " ")

    settings = load_settings()

    assert settings.api_requests_query is None
    assert settings.prometheus_url is None


def test_missing_collector_url_is_a_clear_configuration_error():
    with pytest.raises(ConfigurationError) as caught:
        check_collector_url(load_settings())

    assert "AGENT_COLLECTOR_URL" in str(caught.value)


@pytest.mark.parametrize("value", ["36d", "900h"])
def test_catch_up_is_capped_at_stripes_35_days(monkeypatch, value):
    monkeypatch.setenv("AGENT_MAX_CATCHUP", value)

    with pytest.raises(ValidationError, match="35d"):
        load_settings()


def test_the_new_names_are_read_from_the_environment(monkeypatch):
    for name, value in {
        "AGENT_JITTER": "5m",
        "AGENT_QUERY_OFFSET": "1m",
        "AGENT_MAX_CATCHUP": "35d",
        "AGENT_PARTIAL_AFTER": "3h",
        "AGENT_SPOOL_MAX_REPORTS": "500",
        "AGENT_LEADER_ELECTION": "true",
        "AGENT_LEASE_NAME": "acme-usage",
        "AGENT_POD_NAME": "agent-0",
        "AGENT_NAMESPACE": "customer-acme",
    }.items():
        monkeypatch.setenv(name, value)

    settings = load_settings()

    assert settings.effective_jitter == timedelta(minutes=5)
    assert settings.effective_query_offset == timedelta(minutes=1)
    assert settings.max_catchup == timedelta(days=35)
    assert settings.partial_after == timedelta(hours=3)
    assert settings.spool_max_reports == 500
    assert settings.leader_election is True
    assert (settings.lease_name, settings.pod_name) == ("acme-usage", "agent-0")
    assert settings.namespace == "customer-acme"


def test_an_unknown_crash_point_is_refused(monkeypatch):
    monkeypatch.setenv("AGENT_TEST_CRASH_AT", "somewhere")

    with pytest.raises(ValidationError):
        load_settings()


# Every duration setting: (variable, field, bare number and what it means, a value under its
# minimum, how the default prints in docs/configuration.md).
DURATIONS = [
    ("AGENT_INTERVAL", "interval", ("30", timedelta(seconds=30)), "999ms", "1h"),
    ("COLLECTION_INTERVAL", "interval", ("60000", timedelta(minutes=1)), "999", ""),
    ("AGENT_QUERY_OFFSET", "query_offset", ("30", timedelta(seconds=30)), "-1", ""),
    ("AGENT_JITTER", "jitter", ("30", timedelta(seconds=30)), "-1", ""),
    ("AGENT_MAX_CATCHUP", "max_catchup", ("86400", timedelta(days=1)), "-1", "7d"),
    ("AGENT_PARTIAL_AFTER", "partial_after", ("30", timedelta(seconds=30)), "-1", "1h"),
    ("AGENT_LEASE_DURATION", "lease_duration", ("30", timedelta(seconds=30)), "0", "15s"),
    ("AGENT_LEASE_RENEW", "lease_renew", ("3", timedelta(seconds=3)), "0", "5s"),
    ("AGENT_SHUTDOWN_GRACE", "shutdown_grace", ("3", timedelta(seconds=3)), "0", "8s"),
    ("AGENT_SCRAPE_INTERVAL", "scrape_interval", ("30", timedelta(seconds=30)), "0", "15s"),
    ("AGENT_BASELINE_LOOKBACK", "baseline_lookback", ("30", timedelta(seconds=30)), "0", "1d"),
    ("AGENT_HTTP_TIMEOUT", "http_timeout", ("30", timedelta(seconds=30)), "0", "10s"),
    ("AGENT_RETRY_INITIAL", "retry_initial", ("2", timedelta(seconds=2)), "0", "1s"),
    ("AGENT_RETRY_MAX", "retry_max", ("300", timedelta(minutes=5)), "0", "5m"),
]
IDS = [row[0] for row in DURATIONS]


def test_every_duration_setting_is_in_the_table():
    fields = {
        name
        for name, field in AgentSettings.model_fields.items()
        if "duration" in (field.description or "")
    }
    assert fields == {"seed_interval"} | {row[1] for row in DURATIONS}


@pytest.mark.parametrize(("env", "field", "bare", "under", "default"), DURATIONS, ids=IDS)
def test_bare_numbers_in_duration_settings_are_seconds_except_the_seeds_interval(
    monkeypatch, env, field, bare, under, default
):
    raw, expected = bare
    monkeypatch.setenv(env, raw)

    assert getattr(load_settings(), field) == expected


@pytest.mark.parametrize(("env", "field", "bare", "under", "default"), DURATIONS, ids=IDS)
def test_duration_settings_take_units(monkeypatch, env, field, bare, under, default):
    monkeypatch.setenv(env, "4m")

    assert getattr(load_settings(), field) == timedelta(minutes=4)


@pytest.mark.parametrize(("env", "field", "bare", "under", "default"), DURATIONS, ids=IDS)
def test_duration_settings_under_their_minimum_name_the_setting(
    monkeypatch, env, field, bare, under, default
):
    monkeypatch.setenv(env, under)

    with pytest.raises(ValidationError) as caught:
        load_settings()

    assert any(line.startswith(f"{env}: ") for line in setting_errors(caught.value))


@pytest.mark.parametrize(("env", "field", "bare", "under", "default"), DURATIONS, ids=IDS)
def test_duration_defaults_print_as_durations_the_parser_reads(
    monkeypatch, env, field, bare, under, default
):
    name = "seed_interval" if env == "COLLECTION_INTERVAL" else field
    value = AgentSettings.model_fields[name].default

    printed = "" if value is None else format_duration(value)

    assert printed == default
    if value is not None:
        monkeypatch.setenv(env, printed)
        assert getattr(load_settings(), field) == value


def test_retry_max_shorter_than_retry_initial_names_both(monkeypatch):
    monkeypatch.setenv("AGENT_RETRY_INITIAL", "10s")
    monkeypatch.setenv("AGENT_RETRY_MAX", "5s")

    with pytest.raises(ValidationError, match=r"AGENT_RETRY_MAX .* AGENT_RETRY_INITIAL"):
        load_settings()
