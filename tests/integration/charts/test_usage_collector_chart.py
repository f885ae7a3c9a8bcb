"""charts/usage-collector rendered by the real Helm engine against kmock."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.integration.charts.checks import assert_restricted, env_of, validate_strict
from tests.support.helm import REPO_ROOT, Helm, HelmError

NAMESPACE = "usage-metering"
POSTGRES_HPA = yaml.safe_load((REPO_ROOT / "docs/examples/collector-values.yaml").read_text())

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults-sqlite": {},
    "postgresql-hpa": POSTGRES_HPA,
    "postgresql-inline-secrets": {
        "database": {"driver": "postgresql", "url": "postgresql+asyncpg://u:p@db:5432/usage"},
        "stripe": {"apiKey": "sk_test_123", "webhookSecret": "whsec_123", "maxRps": 25},
        "replicaCount": 3,
        "auth": {"disabled": True},
    },
}


def _deployment_container(rendered: Any) -> dict[str, Any]:
    (container,) = rendered.one("Deployment")["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_manifest_validates_strictly_and_runs_restricted(helm: Helm, name: str) -> None:
    rendered = helm.render("usage-collector", VALUE_SETS[name], namespace=NAMESPACE)

    for doc in rendered.all:
        validate_strict(doc)
    assert_restricted(rendered.all)
    assert rendered.notes


def test_defaults_run_one_sqlite_replica_on_a_pvc_without_a_migration_job(helm: Helm) -> None:
    rendered = helm.render("usage-collector", namespace=NAMESPACE)

    assert rendered.hooks == []
    deployment = rendered.one("Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pvc = rendered.one("PersistentVolumeClaim")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    container = _deployment_container(rendered)
    assert container["args"] == [
        "--secrets-dir",
        "/etc/usage-collector/secrets",
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        "3100",
    ]
    assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    service = rendered.one("Service")
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 3100, "targetPort": "http", "protocol": "TCP"}
    ]


def test_postgresql_with_hpa_migrates_in_a_pre_install_hook(helm: Helm) -> None:
    rendered = helm.render("usage-collector", POSTGRES_HPA, namespace=NAMESPACE)

    job = rendered.one("Job")
    assert job in rendered.hooks
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    assert migrate["args"] == ["--secrets-dir", "/etc/usage-collector/secrets", "db", "upgrade"]
    assert rendered.of_kind("PersistentVolumeClaim") == []
    assert rendered.of_kind("Secret") == []
    deployment = rendered.one("Deployment")
    assert "replicas" not in deployment["spec"]
    hpa = rendered.one("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert rendered.one("Ingress")["spec"]["ingressClassName"] == "nginx"
    assert rendered.one("PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert rendered.one("ServiceMonitor")["spec"]["endpoints"][0]["path"] == "/metrics"
    assert "--no-migrate" in _deployment_container(rendered)["args"]
    secrets = deployment["spec"]["template"]["spec"]["volumes"][0]["projected"]["sources"]
    assert secrets == [
        {
            "secret": {
                "name": "usage-collector-database",
                "items": [{"key": "database-url", "path": "collector_database_url"}],
            }
        },
        {
            "secret": {
                "name": "usage-collector-stripe",
                "items": [
                    {"key": "stripe-api-key", "path": "collector_stripe_api_key"},
                    {"key": "stripe-webhook-secret", "path": "collector_stripe_webhook_secret"},
                ],
            }
        },
    ]


def test_inline_secrets_exist_before_the_migration_job(helm: Helm) -> None:
    rendered = helm.render(
        "usage-collector", VALUE_SETS["postgresql-inline-secrets"], namespace=NAMESPACE
    )

    secret = rendered.one("Secret")
    assert secret in rendered.hooks
    assert int(secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        rendered.one("Job")["metadata"]["annotations"]["helm.sh/hook-weight"]
    )
    assert set(secret["data"]) == {"database-url", "stripe-api-key", "stripe-webhook-secret"}
    env = env_of(_deployment_container(rendered))
    assert env["COLLECTOR_STRIPE_MAX_RPS"] == "25"
    assert env["COLLECTOR_AUTH_DISABLED"] == "true"
    assert not any("sk_test" in str(value) for value in env.values())
    assert rendered.one("Deployment")["spec"]["replicas"] == 3


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"replicaCount": 2}, "/replicaCount"),
        ({"persistence": {"enabled": False}}, "/persistence/enabled"),
        ({"autoscaling": {"enabled": True}}, "/autoscaling/enabled"),
        ({"databse": {"driver": "postgresql"}}, "databse"),
        ({"stripe": {"mode": "invoices"}}, "/stripe/mode"),
    ],
)
def test_bad_values_are_rejected_naming_the_field(
    helm: Helm, values: dict[str, Any], field: str
) -> None:
    with pytest.raises(HelmError) as caught:
        helm.render("usage-collector", values, namespace=NAMESPACE)

    assert field in str(caught.value)


def test_postgresql_without_a_url_or_secret_is_refused(helm: Helm) -> None:
    with pytest.raises(HelmError, match=r"database\.existingSecret"):
        helm.render("usage-collector", {"database": {"driver": "postgresql"}}, namespace=NAMESPACE)


def test_lint_passes(helm: Helm) -> None:
    result = helm.lint("usage-collector")["result"]

    assert not result["Errors"]
    assert all(message["Severity"] < 2 for message in result["Messages"])


def test_forwarding_and_rate_limit_values_reach_the_environment(helm: Helm) -> None:
    values = {
        "stripe": {
            "coalesce": False,
            "concurrency": 8,
            "periodRefresh": 120,
            "ageWarningDays": 10,
        },
        "auth": {"rateLimitRps": 50, "rateLimitBurst": 100},
    }
    rendered = helm.render("usage-collector", values, namespace=NAMESPACE)
    env = {e["name"]: e.get("value") for e in _deployment_container(rendered)["env"]}
    assert env["COLLECTOR_STRIPE_COALESCE"] == "false"
    assert env["COLLECTOR_STRIPE_CONCURRENCY"] == "8"
    assert env["COLLECTOR_STRIPE_PERIOD_REFRESH"] == "120"
    assert env["COLLECTOR_STRIPE_AGE_WARNING_DAYS"] == "10"
    assert env["COLLECTOR_RATE_LIMIT_RPS"] == "50"
    assert env["COLLECTOR_RATE_LIMIT_BURST"] == "100"
