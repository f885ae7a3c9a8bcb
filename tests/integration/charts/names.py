"""The API server's name rules, applied to every name a rendered chart creates or refers to.

kubernetes-validate checks shapes, not names: ``metadata.name`` is any string in the OpenAPI
schema, so ``initech-billingExporter`` validated and was refused only by a real cluster. The
regular expressions and limits are those of k8s.io/apimachinery/pkg/util/validation:

- DNS-1123 subdomain (most kinds, Secret and ConfigMap references, ServiceAccounts, Leases):
  lowercase alphanumerics, ``-`` and ``.``, at most 253 characters;
- DNS-1123 label (volume and container names, Job names, which become a label value):
  lowercase alphanumerics and ``-``, at most 63;
- DNS-1035 label (Service names): a DNS-1123 label that starts with a letter;
- label values: at most 63 of alphanumerics, ``-``, ``_`` and ``.``, alphanumeric at both ends;
- label keys: an optional DNS-1123 subdomain prefix and ``/``, then a qualified name;
- IANA service names (container port names): at most 15, lowercase, at least one letter.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL = re.compile(_LABEL)
DNS1123_SUBDOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})*")
DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
IANA_SVC_NAME = re.compile(r"[-a-z0-9]+")

# kind -> (rule, maximum length) for metadata.name; every other kind is a DNS-1123 subdomain.
NAME_RULES: dict[str, tuple[str, re.Pattern[str], int]] = {
    "Service": ("DNS-1035 label", DNS1035_LABEL, 63),
    "Job": ("DNS-1123 label", DNS1123_LABEL, 63),
    "Namespace": ("DNS-1123 label", DNS1123_LABEL, 63),
}
SUBDOMAIN = ("DNS-1123 subdomain", DNS1123_SUBDOMAIN, 253)
LABEL = ("DNS-1123 label", DNS1123_LABEL, 63)
SERVICE = NAME_RULES["Service"]


def _check(where: str, value: Any, rule: tuple[str, re.Pattern[str], int]) -> Iterator[str]:
    kind, pattern, limit = rule
    if not isinstance(value, str) or not pattern.fullmatch(value) or len(value) > limit:
        yield f"{where}: {value!r} is not a {kind} (at most {limit} characters)"


def _labels(where: str, labels: dict[str, Any] | None) -> Iterator[str]:
    for key, value in (labels or {}).items():
        prefix, _, name = key.rpartition("/")
        if prefix:
            yield from _check(f"{where} key {key!r} prefix", prefix, SUBDOMAIN)
        if not QUALIFIED_NAME.fullmatch(name) or len(name) > 63:
            yield f"{where}: {key!r} is not a qualified label key"
        if not isinstance(value, str) or not LABEL_VALUE.fullmatch(value) or len(value) > 63:
            yield f"{where} {key}: {value!r} is not a label value (at most 63 characters)"


def _selector(where: str, selector: dict[str, Any] | None) -> Iterator[str]:
    if selector:
        yield from _labels(f"{where}.matchLabels", selector.get("matchLabels"))


def _port_name(where: str, name: Any) -> Iterator[str]:
    valid = (
        isinstance(name, str)
        and IANA_SVC_NAME.fullmatch(name)
        and len(name) <= 15
        and re.search("[a-z]", name)
        and "--" not in name
        and not name.startswith("-")
        and not name.endswith("-")
    )
    if not valid:
        yield f"{where}: {name!r} is not an IANA service name"


def _pod(where: str, template: dict[str, Any]) -> Iterator[str]:
    yield from _labels(f"{where}.metadata.labels", template["metadata"].get("labels"))
    spec = template["spec"]
    for field in ("serviceAccountName", "priorityClassName"):
        if field in spec:
            yield from _check(f"{where}.spec.{field}", spec[field], SUBDOMAIN)
    for secret in spec.get("imagePullSecrets", []):
        yield from _check(f"{where}.spec.imagePullSecrets", secret["name"], SUBDOMAIN)
    for index, constraint in enumerate(spec.get("topologySpreadConstraints", [])):
        yield from _selector(
            f"{where}.spec.topologySpreadConstraints[{index}].labelSelector",
            constraint.get("labelSelector"),
        )
    for volume in spec.get("volumes", []):
        at = f"{where}.spec.volumes[{volume['name']}]"
        yield from _check(at, volume["name"], LABEL)
        if "persistentVolumeClaim" in volume:
            yield from _check(at, volume["persistentVolumeClaim"]["claimName"], SUBDOMAIN)
        if "secret" in volume:
            yield from _check(at, volume["secret"]["secretName"], SUBDOMAIN)
        if "configMap" in volume:
            yield from _check(at, volume["configMap"]["name"], SUBDOMAIN)
        for source in volume.get("projected", {}).get("sources", []):
            for kind in ("secret", "configMap"):
                if kind in source:
                    yield from _check(f"{at}.{kind}", source[kind]["name"], SUBDOMAIN)
    for container in spec.get("initContainers", []) + spec["containers"]:
        at = f"{where}.containers[{container['name']}]"
        yield from _check(at, container["name"], LABEL)
        for port in container.get("ports", []):
            if "name" in port:
                yield from _port_name(f"{at}.ports", port["name"])
        for item in container.get("env", []):
            reference = item.get("valueFrom", {})
            for kind in ("secretKeyRef", "configMapKeyRef"):
                if kind in reference:
                    yield from _check(
                        f"{at}.env[{item['name']}]", reference[kind]["name"], SUBDOMAIN
                    )
            if item["name"] == "AGENT_LEASE_NAME":
                yield from _check(f"{at}.env[AGENT_LEASE_NAME]", item["value"], SUBDOMAIN)
        for source in container.get("envFrom", []):
            for kind in ("secretRef", "configMapRef"):
                if kind in source:
                    yield from _check(f"{at}.envFrom", source[kind]["name"], SUBDOMAIN)


def name_problems(doc: dict[str, Any]) -> list[str]:
    """Every name in ``doc`` the API server would refuse, each with where it is."""
    kind = doc["kind"]
    where = f"{kind}/{doc['metadata'].get('name')}"
    problems = list(
        _check(
            f"{where} metadata.name", doc["metadata"].get("name"), NAME_RULES.get(kind, SUBDOMAIN)
        )
    )
    problems += _labels(f"{where} metadata.labels", doc["metadata"].get("labels"))
    spec = doc.get("spec", {})
    if "template" in spec:
        problems += _pod(f"{where} spec.template", spec["template"])
    if kind in {"Deployment", "PodDisruptionBudget", "ServiceMonitor"}:
        problems += _selector(f"{where} spec.selector", spec.get("selector"))
    if kind == "Service":
        problems += _labels(f"{where} spec.selector", spec.get("selector"))
        for port in spec.get("ports", []):
            problems += _check(f"{where} spec.ports", port.get("name"), LABEL)
    if kind in {"Role", "ClusterRole"}:
        for rule in doc.get("rules", []):
            for name in rule.get("resourceNames", []):
                problems += _check(f"{where} rules.resourceNames", name, SUBDOMAIN)
    if kind in {"RoleBinding", "ClusterRoleBinding"}:
        problems += _check(f"{where} roleRef.name", doc["roleRef"]["name"], SUBDOMAIN)
        for subject in doc.get("subjects", []):
            problems += _check(f"{where} subjects", subject["name"], SUBDOMAIN)
    if kind == "HorizontalPodAutoscaler":
        problems += _check(f"{where} scaleTargetRef", spec["scaleTargetRef"]["name"], SUBDOMAIN)
    if kind == "Ingress":
        for rule in spec.get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                problems += _check(f"{where} backend", path["backend"]["service"]["name"], SERVICE)
        for tls in spec.get("tls", []):
            problems += _check(f"{where} tls.secretName", tls.get("secretName"), SUBDOMAIN)
    return problems


def all_name_problems(docs: list[dict[str, Any]]) -> list[str]:
    return [problem for doc in docs for problem in name_problems(doc)]
