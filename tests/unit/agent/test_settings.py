"""Agent settings: the fixed AGENT_ names, the seed's names, durations and secret files."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.cli.wiring import check_collector_url
from agent.errors import ConfigurationError
from agent.settings import AgentSettings, load_settings


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
        ("900000", timedelta(minutes=15)),
    ],
)
def test_interval_forms(monkeypatch, raw, expected):
    monkeypatch.setenv("AGENT_INTERVAL", raw)

    assert load_settings().interval == expected


@pytest.mark.parametrize("raw", ["soon", "0", "-5m"])
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
