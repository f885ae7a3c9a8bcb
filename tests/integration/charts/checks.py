"""Shared assertions for rendered charts: strict Kubernetes schemas and the security baseline."""

from __future__ import annotations

from typing import Any

import kubernetes_validate

# The restricted Pod Security Standard, exactly as issue 5 states it.
POD_SECURITY_CONTEXT = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "runAsGroup": 65532,
    "fsGroup": 65532,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY_CONTEXT = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "runAsGroup": 65532,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
KUBERNETES_VERSION = kubernetes_validate.latest_version()


def validate_strict(doc: dict[str, Any]) -> None:
    """kubernetes-validate --strict for built-in kinds; shape checks for the operator's kinds."""
    if doc["kind"] == "PrometheusRule":
        assert doc["apiVersion"] == "monitoring.coreos.com/v1"
        assert set(doc["spec"]) == {"groups"}
        for group in doc["spec"]["groups"]:
            assert set(group) <= {"name", "interval", "rules"}
            assert group["name"]
            assert group["rules"]
            for rule in group["rules"]:
                assert set(rule) <= {"alert", "record", "expr", "for", "labels", "annotations"}
                assert str(rule["expr"]).strip()
                assert all(isinstance(value, str) for value in rule.get("labels", {}).values())
        return
    if doc["kind"] == "ServiceMonitor":
        assert doc["apiVersion"] == "monitoring.coreos.com/v1"
        assert set(doc["spec"]) <= {"selector", "namespaceSelector", "endpoints"}
        for endpoint in doc["spec"]["endpoints"]:
            assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}
        return
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def pod_specs(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [doc["spec"]["template"]["spec"] for doc in docs if doc["kind"] in {"Deployment", "Job"}]


def assert_restricted(docs: list[dict[str, Any]]) -> None:
    """Every pod and container runs with the restricted security context and a writable /tmp."""
    specs = pod_specs(docs)
    assert specs
    for spec in specs:
        assert spec["securityContext"] == POD_SECURITY_CONTEXT
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        assert "emptyDir" in volumes["tmp"]
        for container in spec["containers"]:
            assert container["securityContext"] == CONTAINER_SECURITY_CONTEXT
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
            assert container["resources"]["requests"]
            assert container["resources"]["limits"]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    """Environment variables by name: plain values as strings, references as their dicts."""
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}
