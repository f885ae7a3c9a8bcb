"""charts/usage-collector rendered by the real Helm engine against kmock."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml

from tests.integration.charts.checks import assert_restricted, env_of, validate_strict
from tests.support.helm import REPO_ROOT, Helm, HelmError, Rendered

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
    assert migrate["args"] == ["db", "upgrade"]
    assert rendered.of_kind("PersistentVolumeClaim") == []
    # Only the generated console session key: the database and Stripe come from existing Secrets.
    assert [s["metadata"]["name"] for s in rendered.of_kind("Secret")] == [
        "usage-collector-console"
    ]
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
                "items": [{"key": "stripe-api-key", "path": "collector_stripe_api_key"}],
            }
        },
        {
            "secret": {
                "name": "usage-collector-stripe",
                "optional": True,
                "items": [
                    {"key": "stripe-webhook-secret", "path": "collector_stripe_webhook_secret"}
                ],
            }
        },
        {
            "secret": {
                "name": "usage-collector-console",
                "items": [
                    {"key": "console-session-secret", "path": "collector_console_session_secret"}
                ],
            }
        },
    ]


def test_inline_secrets_exist_before_the_migration_job(helm: Helm) -> None:
    rendered = helm.render(
        "usage-collector", VALUE_SETS["postgresql-inline-secrets"], namespace=NAMESPACE
    )

    (secret,) = [
        s for s in rendered.of_kind("Secret") if not s["metadata"]["name"].endswith("-console")
    ]
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


# Issue 12, point 9: what a real cluster refused or the strict schema did not allow.

SECRETS_DIR = "/etc/usage-collector/secrets"
# Where the migration Job does not matter, leave it out: every hook Job costs Helm a wait.
POSTGRES_HPA_NO_JOB = {**POSTGRES_HPA, "migrations": {"enabled": False}}


@pytest.fixture(scope="module")
def hpa(helm: Helm) -> Rendered:
    """docs/examples/collector-values.yaml, rendered once for the tests that only read it."""
    return helm.render("usage-collector", POSTGRES_HPA, namespace=NAMESPACE)


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def test_the_autoscaled_collector_spreads_across_zones_and_nodes(hpa: Rendered) -> None:
    deployment = hpa.one("Deployment")
    constraints = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in constraints] == [
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    ]
    assert {c["whenUnsatisfiable"] for c in constraints} == {"ScheduleAnyway"}
    assert {c["maxSkew"] for c in constraints} == {1}
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    for constraint in constraints:
        assert constraint["labelSelector"] == deployment["spec"]["selector"]
        assert _matches(constraint["labelSelector"]["matchLabels"], pod_labels)
    assert "topologySpreadConstraints" not in hpa.one("Job")["spec"]["template"]["spec"]


@pytest.mark.parametrize(
    "values",
    [
        {},
        {**POSTGRES_HPA_NO_JOB, "topologySpreadConstraints": []},
    ],
    ids=["one-sqlite-replica", "turned-off"],
)
def test_no_spread_for_one_replica_or_when_turned_off(helm: Helm, values: dict[str, Any]) -> None:
    rendered = helm.render("usage-collector", values, namespace=NAMESPACE)

    assert "topologySpreadConstraints" not in rendered.one("Deployment")["spec"]["template"]["spec"]


def test_affinity_reaches_the_pods_and_node_affinity_the_migration_job(helm: Helm) -> None:
    node_affinity = {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {
                "weight": 50,
                "preference": {
                    "matchExpressions": [{"key": "pool", "operator": "In", "values": ["infra"]}]
                },
            }
        ]
    }
    anti_affinity = {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {
                "topologyKey": "kubernetes.io/hostname",
                "labelSelector": {
                    "matchExpressions": [
                        {
                            "key": "app.kubernetes.io/component",
                            "operator": "In",
                            "values": ["collector"],
                        }
                    ]
                },
            }
        ]
    }
    values = {
        **POSTGRES_HPA,
        "affinity": {"nodeAffinity": node_affinity, "podAntiAffinity": anti_affinity},
        "topologySpreadConstraints": [
            {
                "maxSkew": 2,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "DoNotSchedule",
            }
        ],
    }

    rendered = helm.render("usage-collector", values, namespace=NAMESPACE)

    for doc in rendered.all:
        validate_strict(doc)
    deployment = rendered.one("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["affinity"] == values["affinity"]
    assert pod["topologySpreadConstraints"] == [
        {
            "maxSkew": 2,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": deployment["spec"]["selector"],
        }
    ]
    # The Job runs where the collector may run; pod (anti-)affinity is for the serving pods.
    job_pod = rendered.one("Job")["spec"]["template"]["spec"]
    assert job_pod["affinity"] == {"nodeAffinity": node_affinity}


def test_no_selector_matches_the_migration_job_pods(hpa: Rendered) -> None:
    job_labels = hpa.one("Job")["spec"]["template"]["metadata"]["labels"]
    deployment = hpa.one("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = {
        "Deployment": deployment["spec"]["selector"]["matchLabels"],
        "Service": hpa.one("Service")["spec"]["selector"],
        "PodDisruptionBudget": hpa.one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
    }
    for kind, selector in selectors.items():
        assert _matches(selector, pod_labels), kind
        assert not _matches(selector, job_labels), kind
    assert job_labels["app.kubernetes.io/component"] == "migration"
    # The HPA scales the Deployment and counts the pods its selector matches.
    target = hpa.one("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert target == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "usage-collector"}
    assert deployment["metadata"]["name"] == "usage-collector"


def test_max_unavailable_alone_makes_the_disruption_budget(helm: Helm) -> None:
    values = {
        **POSTGRES_HPA_NO_JOB,
        "podDisruptionBudget": {"enabled": True, "maxUnavailable": "50%"},
    }

    pdb = helm.render("usage-collector", values, namespace=NAMESPACE).one("PodDisruptionBudget")

    validate_strict(pdb)
    assert pdb["spec"]["maxUnavailable"] == "50%"
    assert "minAvailable" not in pdb["spec"]


def test_the_disruption_budget_keeps_one_pod_by_default(helm: Helm) -> None:
    values = {**POSTGRES_HPA_NO_JOB, "podDisruptionBudget": {"enabled": True}}

    pdb = helm.render("usage-collector", values, namespace=NAMESPACE).one("PodDisruptionBudget")

    assert pdb["spec"]["minAvailable"] == 1
    assert "maxUnavailable" not in pdb["spec"]


def test_the_stripe_secret_need_not_hold_a_webhook_key(hpa: Rendered) -> None:
    volumes = hpa.one("Deployment")["spec"]["template"]["spec"]["volumes"]
    sources = next(v for v in volumes if v["name"] == "secrets")["projected"]["sources"]
    by_path = {
        item["path"]: source["secret"] for source in sources for item in source["secret"]["items"]
    }
    assert by_path["collector_stripe_webhook_secret"]["name"] == "usage-collector-stripe"
    assert by_path["collector_stripe_webhook_secret"]["optional"] is True
    # The API key and the database URL stay required: without them nothing can be billed.
    assert by_path["collector_stripe_api_key"].get("optional", False) is False
    assert by_path["collector_database_url"].get("optional", False) is False


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_kubectl_exec_finds_the_secret_files(helm: Helm, name: str) -> None:
    rendered = helm.render("usage-collector", VALUE_SETS[name], namespace=NAMESPACE)

    for doc in rendered.of_kind("Deployment") + rendered.of_kind("Job"):
        (container,) = doc["spec"]["template"]["spec"]["containers"]
        assert env_of(container)["COLLECTOR_SECRETS_DIR"] == SECRETS_DIR
        assert {"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True} in container[
            "volumeMounts"
        ]
        assert "--secrets-dir" not in container["args"]
    assert "--secrets-dir" not in rendered.notes


def _console_key_source(rendered: Rendered, kind: str = "Deployment") -> dict[str, Any] | None:
    (doc,) = rendered.of_kind(kind)
    volumes = doc["spec"]["template"]["spec"]["volumes"]
    sources = next(v for v in volumes if v["name"] == "secrets")["projected"]["sources"]
    for source in sources:
        for item in source["secret"]["items"]:
            if item["path"] == "collector_console_session_secret":
                return {"name": source["secret"]["name"], "key": item["key"]}
    return None


def _console_key(rendered: Rendered) -> str:
    (secret,) = [
        s for s in rendered.of_kind("Secret") if s["metadata"]["name"].endswith("-console")
    ]
    return base64.b64decode(secret["data"]["console-session-secret"]).decode()


def test_every_replica_signs_console_sessions_with_one_generated_key(hpa: Rendered) -> None:
    source = _console_key_source(hpa)
    assert source == {"name": "usage-collector-console", "key": "console-session-secret"}
    assert len(_console_key(hpa)) >= 32


def test_an_upgrade_keeps_the_generated_console_key(helm: Helm) -> None:
    earlier = helm.render("usage-collector", POSTGRES_HPA, namespace=NAMESPACE)
    secret = next(
        s for s in earlier.of_kind("Secret") if s["metadata"]["name"].endswith("-console")
    )
    secret["metadata"]["namespace"] = NAMESPACE
    secret["metadata"].setdefault("annotations", {}).update(
        {
            "meta.helm.sh/release-name": "usage-collector",
            "meta.helm.sh/release-namespace": NAMESPACE,
        }
    )

    again = helm.render("usage-collector", POSTGRES_HPA, namespace=NAMESPACE, existing=(secret,))
    fresh = helm.render("usage-collector", POSTGRES_HPA, namespace=NAMESPACE)

    assert _console_key(again) == _console_key(earlier)
    assert _console_key(fresh) != _console_key(earlier)


def test_a_given_or_existing_console_key_is_used(helm: Helm) -> None:
    given = helm.render(
        "usage-collector", {"console": {"sessionSecret": "k" * 40}}, namespace=NAMESPACE
    )
    assert _console_key(given) == "k" * 40

    existing = helm.render(
        "usage-collector",
        {"console": {"existingSecret": "ops-console", "existingSecretKey": "signing"}},
        namespace=NAMESPACE,
    )
    assert not [s for s in existing.of_kind("Secret") if s["metadata"]["name"].endswith("-console")]
    assert _console_key_source(existing) == {"name": "ops-console", "key": "signing"}


def test_a_short_console_key_is_refused(helm: Helm) -> None:
    with pytest.raises(HelmError, match="sessionSecret"):
        helm.render("usage-collector", {"console": {"sessionSecret": "short"}}, namespace=NAMESPACE)


def test_the_migration_job_does_not_wait_for_the_console_key(hpa: Rendered) -> None:
    (job,) = [doc for doc in hpa.hooks if doc["kind"] == "Job"]
    volumes = job["spec"]["template"]["spec"]["volumes"]
    sources = next(v for v in volumes if v["name"] == "secrets")["projected"]["sources"]
    paths = {item["path"] for source in sources for item in source["secret"]["items"]}
    assert "collector_console_session_secret" not in paths


def test_a_disabled_console_has_no_key_and_says_so(helm: Helm) -> None:
    rendered = helm.render("usage-collector", {"console": {"enabled": False}}, namespace=NAMESPACE)

    assert _console_key_source(rendered) is None
    assert not [s for s in rendered.of_kind("Secret") if s["metadata"]["name"].endswith("-console")]
    assert env_of(_deployment_container(rendered))["COLLECTOR_CONSOLE_ENABLED"] == "false"
