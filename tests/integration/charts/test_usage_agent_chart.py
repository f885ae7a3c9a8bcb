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
