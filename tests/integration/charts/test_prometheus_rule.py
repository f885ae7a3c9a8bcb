"""charts/usage-collector's optional PrometheusRule: the alerts an operator needs first.

kubernetes-validate does not know the Prometheus Operator's kinds, so the rule is shape-checked
and its groups are handed to `promtool check rules`, which parses every expression.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.charts.checks import validate_strict
from tests.support import binaries
from tests.support.helm import Helm, HelmError

NAMESPACE = "usage-metering"
RULES_ON = {"prometheusRule": {"enabled": True, "labels": {"release": "prom"}}}
# The gauges each alert reads: the agent's last send, and the collector's outbox and drift.
ALERT_METRICS = {
    "UsageForwardingStuck": "usage_collector_oldest_unbilled_seconds",
    "UsageDeadLetters": "usage_collector_dead_letters",
    "UsageForwardsAgeing": "usage_collector_ageing_forwards",
    "UsageAgentSilent": "usage_agent_last_send_timestamp_seconds",
    "UsageAgentNeverSent": "usage_agent_last_send_timestamp_seconds",
    "UsageDrift": "usage_collector_customers_drifting",
}


def _rules(rendered: Any) -> dict[str, dict[str, Any]]:
    rule = rendered.one("PrometheusRule")
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}


def test_no_rule_by_default(helm: Helm) -> None:
    rendered = helm.render("usage-collector", namespace=NAMESPACE)

    assert rendered.of_kind("PrometheusRule") == []


def test_the_rule_alerts_on_stuck_forwarding_dead_letters_silent_agents_and_drift(
    helm: Helm,
) -> None:
    rendered = helm.render("usage-collector", RULES_ON, namespace=NAMESPACE)

    rule = rendered.one("PrometheusRule")
    validate_strict(rule)
    assert rule["metadata"]["labels"]["release"] == "prom"
    alerts = _rules(rendered)
    assert set(alerts) == set(ALERT_METRICS)
    for name, metric in ALERT_METRICS.items():
        assert metric in alerts[name]["expr"], name
        assert alerts[name]["labels"]["severity"] in {"warning", "critical"}
        assert alerts[name]["annotations"]["summary"]
        assert alerts[name]["annotations"]["description"]
    assert "usage_collector_dead_letters_total" not in alerts["UsageDeadLetters"]["expr"]
    assert "> 0" in alerts["UsageDrift"]["expr"]
    # Three of the default agent interval (1h) without a send.
    assert "> 10800" in alerts["UsageAgentSilent"]["expr"]
    assert alerts["UsageAgentNeverSent"]["for"] == "3h"


def test_the_thresholds_follow_the_values(helm: Helm) -> None:
    values = {
        "prometheusRule": {
            "enabled": True,
            "agentSilentSeconds": 5400,
            "unbilledSeconds": 900,
        }
    }

    alerts = _rules(helm.render("usage-collector", values, namespace=NAMESPACE))

    assert "> 5400" in alerts["UsageAgentSilent"]["expr"]
    assert alerts["UsageAgentNeverSent"]["for"] == "90m"
    assert "> 900" in alerts["UsageForwardingStuck"]["expr"]


def test_promtool_accepts_the_rule_groups(helm: Helm, tmp_path: Path) -> None:
    promtool = binaries.require_binary("promtool", "Prometheus (promtool)")
    rule = helm.render("usage-collector", RULES_ON, namespace=NAMESPACE).one("PrometheusRule")
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))

    result = subprocess.run(
        [promtool, "check", "rules", str(rules_file)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERT_METRICS)} rules found" in result.stdout


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"prometheusRule": {"enabled": "yes"}}, "/prometheusRule/enabled"),
        ({"prometheusRule": {"agentSilentSeconds": 0}}, "/prometheusRule/agentSilentSeconds"),
        ({"prometheusRule": {"lables": {}}}, "lables"),
    ],
)
def test_bad_rule_values_are_rejected_naming_the_field(
    helm: Helm, values: dict[str, Any], field: str
) -> None:
    with pytest.raises(HelmError, match=field):
        helm.render("usage-collector", values, namespace=NAMESPACE)
