"""charts/usage-agent rendered by the real Helm engine against kmock."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.integration.charts.checks import assert_restricted, env_of, validate_strict
from tests.support.helm import REPO_ROOT, Helm, HelmError

NAMESPACE = "customer-acme"
EXAMPLES = REPO_ROOT / "docs" / "examples"


def _example(name: str) -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / name).read_text())


VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "pvc-spool": {"spool": {"persistence": {"enabled": True, "size": "2Gi"}}},
    "leader-election-2-replicas": {"replicaCount": 2, "leaderElection": {"enabled": True}},
    "identity-from-namespace": {"identity": {"fromNamespace": True}},
    "docs-agent-values": _example("agent-values.yaml"),
    "docs-agent-ha-values": {**_example("agent-values.yaml"), **_example("agent-ha-values.yaml")},
    "everything": {
        "replicaCount": 2,
        "leaderElection": {"enabled": True, "leaseName": "acme-usage"},
        "identity": {"fromNamespace": True},
        "collector": {"token": "tok_inline", "tls": {"caBundleConfigMap": "corp-ca"}},
        "deviceApi": {"url": "http://devices:8080", "token": "dev-token"},
        "prometheus": {"queries": {"mqttMessages": "sum(mqtt_messages_total)"}},
        "interval": 3600000,
        "jitter": "5m",
        "maxCatchup": "7d",
        "spool": {
            "maxReports": 500,
            "persistence": {"enabled": True, "accessModes": ["ReadWriteMany"]},
        },
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
        "podDisruptionBudget": {"enabled": True},
        "env": {"EXTRA_FLAG": "1"},
    },
}


def _container(rendered: Any) -> dict[str, Any]:
    deployment = rendered.one("Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_manifest_validates_strictly_and_runs_restricted(helm: Helm, name: str) -> None:
    rendered = helm.render("usage-agent", VALUE_SETS[name], namespace=NAMESPACE)

    for doc in rendered.all:
        validate_strict(doc)
    assert_restricted(rendered.all)
    assert rendered.notes


def test_defaults_have_one_replica_no_rbac_and_an_emptydir_spool(helm: Helm) -> None:
    rendered = helm.render("usage-agent", namespace=NAMESPACE)

    kinds = sorted(doc["kind"] for doc in rendered.all)
    assert kinds == ["Deployment", "Service", "ServiceAccount"]
    deployment = rendered.one("Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    spool = next(v for v in pod["volumes"] if v["name"] == "spool")
    assert "emptyDir" in spool
    container = _container(rendered)
    assert container["args"] == ["run"]
    assert {"name": "spool", "mountPath": "/var/lib/usage-agent"} in container["volumeMounts"]
    assert container["ports"] == [{"name": "metrics", "containerPort": 9102, "protocol": "TCP"}]
    env = env_of(container)
    assert env["AGENT_ENABLED"] == "true"
    assert env["AGENT_INTERVAL"] == "1h"
    assert env["AGENT_STATE_DIR"] == "/var/lib/usage-agent"
    assert env["AGENT_METRICS_PORT"] == "9102"
    assert env["AGENT_LEADER_ELECTION"] == "false"
    assert env["AGENT_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["AGENT_POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert "AGENT_COLLECTOR_TOKEN" not in env


def test_pvc_spool_claims_the_requested_size(helm: Helm) -> None:
    rendered = helm.render("usage-agent", VALUE_SETS["pvc-spool"], namespace=NAMESPACE)

    pvc = rendered.one("PersistentVolumeClaim")
    assert pvc["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    spool = next(v for v in pod["volumes"] if v["name"] == "spool")
    assert spool["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]


def test_leader_election_grants_exactly_lease_get_create_update(helm: Helm) -> None:
    rendered = helm.render(
        "usage-agent", VALUE_SETS["leader-election-2-replicas"], namespace=NAMESPACE
    )

    role = rendered.one("Role")
    assert role["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["usage-agent"],
            "verbs": ["get", "update"],
        },
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    ]
    binding = rendered.one("RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "usage-agent", "namespace": NAMESPACE}
    ]
    assert rendered.of_kind("ClusterRole") == []
    deployment = rendered.one("Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is True
    env = env_of(_container(rendered))
    assert env["AGENT_LEADER_ELECTION"] == "true"
    assert env["AGENT_LEASE_NAME"] == "usage-agent"


def test_identity_from_namespace_may_only_get_its_own_namespace(helm: Helm) -> None:
    rendered = helm.render(
        "usage-agent", VALUE_SETS["identity-from-namespace"], namespace=NAMESPACE
    )

    cluster_role = rendered.one("ClusterRole")
    assert cluster_role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["namespaces"],
            "resourceNames": [NAMESPACE],
            "verbs": ["get"],
        }
    ]
    binding = rendered.one("ClusterRoleBinding")
    assert binding["roleRef"]["name"] == cluster_role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "usage-agent", "namespace": NAMESPACE}
    ]
    assert rendered.of_kind("Role") == []
    env = env_of(_container(rendered))
    assert "AGENT_CUSTOMER_ID" not in env
    assert "AGENT_INSTANCE_ID" not in env


def test_every_setting_reaches_the_agent_environment(helm: Helm) -> None:
    rendered = helm.render("usage-agent", VALUE_SETS["everything"], namespace=NAMESPACE)

    env = env_of(_container(rendered))
    assert env["AGENT_INTERVAL"] == "3600000ms"  # the chart's milliseconds, read as 1h
    assert env["AGENT_JITTER"] == "5m"
    assert env["AGENT_MAX_CATCHUP"] == "7d"
    assert env["AGENT_SPOOL_MAX_REPORTS"] == "500"
    assert env["AGENT_LEASE_NAME"] == "acme-usage"
    assert env["AGENT_MQTT_MESSAGES_QUERY"] == "sum(mqtt_messages_total)"
    assert env["AGENT_DEVICE_API_URL"] == "http://devices:8080"
    assert env["AGENT_CA_BUNDLE"] == "/etc/usage-agent/ca/ca.crt"
    assert env["EXTRA_FLAG"] == "1"
    secret = rendered.one("Secret")
    assert env["AGENT_COLLECTOR_TOKEN"] == {
        "secretKeyRef": {"name": secret["metadata"]["name"], "key": "collector-token"}
    }
    assert env["AGENT_DEVICE_API_TOKEN"] == {
        "secretKeyRef": {"name": secret["metadata"]["name"], "key": "device-api-token"}
    }
    assert set(secret["data"]) == {"collector-token", "device-api-token"}
    monitor = rendered.one("ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert rendered.one("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_an_existing_secret_is_referenced_and_nothing_is_created(helm: Helm) -> None:
    rendered = helm.render("usage-agent", VALUE_SETS["docs-agent-values"], namespace=NAMESPACE)

    assert rendered.of_kind("Secret") == []
    env = env_of(_container(rendered))
    assert env["AGENT_COLLECTOR_TOKEN"] == {
        "secretKeyRef": {"name": "usage-agent-token", "key": "token"}
    }
    assert env["AGENT_CUSTOMER_ID"] == "cus_acme"


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"colector": {"url": "http://c:3100"}}, "colector"),
        ({"collector": {"urll": "http://c:3100"}}, "urll"),
        ({"replicaCount": 2}, "/replicaCount"),
        ({"interval": "abc"}, "/interval"),
        ({"env": {"COLLECTION_INTERVAL": "abc"}}, "/env/COLLECTION_INTERVAL"),
        ({"spool": {"persistence": {"enabled": "yes"}}}, "/spool/persistence/enabled"),
    ],
)
def test_bad_values_are_rejected_naming_the_field(
    helm: Helm, values: dict[str, Any], field: str
) -> None:
    with pytest.raises(HelmError) as caught:
        helm.render("usage-agent", values, namespace=NAMESPACE)

    assert "schema" in str(caught.value)
    assert field in str(caught.value)


def test_two_replicas_on_a_read_write_once_pvc_are_refused(helm: Helm) -> None:
    values = {
        "replicaCount": 2,
        "leaderElection": {"enabled": True},
        "spool": {"persistence": {"enabled": True}},
    }
    with pytest.raises(HelmError, match=r"spool\.persistence\.accessModes"):
        helm.render("usage-agent", values, namespace=NAMESPACE)


def test_lint_passes(helm: Helm) -> None:
    result = helm.lint("usage-agent")["result"]

    assert not result["Errors"]
    # Severity 1 is INFO (e.g. "icon is recommended"); 2 and above are warnings and errors.
    assert all(message["Severity"] < 2 for message in result["Messages"])


# Issue 12, point 9: what a real cluster refused or the strict schema did not allow.

LEADER_ELECTION_3 = {"replicaCount": 3, "leaderElection": {"enabled": True}}


def _pod_spec(rendered: Any) -> dict[str, Any]:
    spec: dict[str, Any] = rendered.one("Deployment")["spec"]["template"]["spec"]
    return spec


def test_three_leader_election_agents_spread_across_zones_and_nodes(helm: Helm) -> None:
    rendered = helm.render("usage-agent", LEADER_ELECTION_3, namespace=NAMESPACE)

    selector = rendered.one("Deployment")["spec"]["selector"]
    assert _pod_spec(rendered)["topologySpreadConstraints"] == [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": selector,
        },
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": selector,
        },
    ]
    assert "affinity" not in _pod_spec(rendered)


def test_one_agent_gets_no_spread_constraints(helm: Helm) -> None:
    rendered = helm.render("usage-agent", namespace=NAMESPACE)

    assert "topologySpreadConstraints" not in _pod_spec(rendered)


def test_affinity_and_spread_constraints_are_taken_as_given(helm: Helm) -> None:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["infra"]}]}
                ]
            }
        },
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "usage-agent"}},
                    },
                }
            ]
        },
    }
    values = {
        **LEADER_ELECTION_3,
        "affinity": affinity,
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule",
            }
        ],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "infra", "operator": "Exists", "effect": "NoSchedule"}],
    }

    rendered = helm.render("usage-agent", values, namespace=NAMESPACE)

    for doc in rendered.all:
        validate_strict(doc)
    pod = _pod_spec(rendered)
    assert pod["affinity"] == affinity
    # A constraint without a labelSelector gets the agent pods' own.
    assert pod["topologySpreadConstraints"] == [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": rendered.one("Deployment")["spec"]["selector"],
        }
    ]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"] == values["tolerations"]


def test_the_default_spread_can_be_turned_off(helm: Helm) -> None:
    values = {**LEADER_ELECTION_3, "topologySpreadConstraints": []}

    rendered = helm.render("usage-agent", values, namespace=NAMESPACE)

    assert "topologySpreadConstraints" not in _pod_spec(rendered)


@pytest.mark.parametrize(
    "values",
    [
        {"interval": "0s"},
        {"interval": "0"},
        {"interval": 0},
        {"interval": 999},
        {"interval": "500ms"},
        {"interval": "0.5s"},
        {"env": {"COLLECTION_INTERVAL": "0"}},
        {"env": {"COLLECTION_INTERVAL": "999"}},
    ],
    ids=str,
)
def test_an_interval_under_the_agents_minimum_is_refused(
    helm: Helm, values: dict[str, Any]
) -> None:
    with pytest.raises(HelmError, match=r"interval.*at least 1s") as caught:
        helm.render("usage-agent", values, namespace=NAMESPACE)

    source = "env.COLLECTION_INTERVAL" if "env" in values else "interval"
    assert source in str(caught.value)


@pytest.mark.parametrize(
    ("values", "agent_interval"),
    [
        ({"interval": "1m"}, "1m"),
        ({"interval": "1s"}, "1s"),
        ({"interval": "1000"}, "1000ms"),
        ({"interval": 1000}, "1000ms"),
        ({"env": {"COLLECTION_INTERVAL": "1800000"}}, "1800000ms"),
    ],
    ids=str,
)
def test_an_interval_of_a_second_or_more_is_accepted(
    helm: Helm, values: dict[str, Any], agent_interval: str
) -> None:
    rendered = helm.render("usage-agent", values, namespace=NAMESPACE)

    assert env_of(_container(rendered))["AGENT_INTERVAL"] == agent_interval


def test_min_available_alone_makes_the_disruption_budget(helm: Helm) -> None:
    values = {**LEADER_ELECTION_3, "podDisruptionBudget": {"enabled": True, "minAvailable": 2}}

    rendered = helm.render("usage-agent", values, namespace=NAMESPACE)

    pdb = rendered.one("PodDisruptionBudget")
    validate_strict(pdb)
    assert pdb["spec"]["minAvailable"] == 2
    assert "maxUnavailable" not in pdb["spec"]


def test_the_disruption_budget_allows_one_pod_down_by_default(helm: Helm) -> None:
    values = {"podDisruptionBudget": {"enabled": True}}

    pdb = helm.render("usage-agent", values, namespace=NAMESPACE).one("PodDisruptionBudget")

    assert pdb["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in pdb["spec"]


def test_both_disruption_budget_fields_are_refused(helm: Helm) -> None:
    values = {"podDisruptionBudget": {"enabled": True, "minAvailable": 1, "maxUnavailable": 1}}

    with pytest.raises(HelmError, match="only one of minAvailable and maxUnavailable"):
        helm.render("usage-agent", values, namespace=NAMESPACE)


def test_the_seed_billing_api_url_is_the_collector_url(helm: Helm) -> None:
    values = {"env": {"BILLING_API_URL": "http://billing:3100", "CUSTOMER_ID": "cust_abc123"}}

    rendered = helm.render("usage-agent", values, namespace=NAMESPACE)

    container = _container(rendered)
    names = [item["name"] for item in container["env"]]
    assert len(names) == len(set(names))
    env = env_of(container)
    assert env["AGENT_COLLECTOR_URL"] == "http://billing:3100"
    assert "BILLING_API_URL" not in env
    assert env["AGENT_CUSTOMER_ID"] == "cust_abc123"
    assert "CUSTOMER_ID" not in env
    assert "http://billing:3100" in rendered.notes


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ({"AGENT_COLLECTOR_URL": "http://billing:3100"}, "collector.url"),
        ({"AGENT_INTERVAL": "5m"}, "interval"),
        ({"AGENT_LEADER_ELECTION": "true"}, "leaderElection.enabled"),
    ],
)
def test_env_may_not_repeat_a_variable_the_chart_sets(
    helm: Helm, env: dict[str, str], value: str
) -> None:
    with pytest.raises(HelmError, match=f"env.{next(iter(env))}.*{value}"):
        helm.render("usage-agent", {"env": env}, namespace=NAMESPACE)
