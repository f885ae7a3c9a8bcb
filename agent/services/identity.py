"""Who the agent bills for: settings first, else its namespace read through the Kubernetes API.

The namespace annotations ``usage.billing/customer-id`` and ``usage.billing/instance-id`` name
the customer and the instance; without the latter the namespace UID is the instance id (stable
for the namespace's life, unique across clusters). Missing identity is a start-up error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from agent.adapters.kube import NamespaceInfo
from agent.errors import ConfigurationError, KubeApiError, KubeRefused

CUSTOMER_ANNOTATION = "usage.billing/customer-id"
INSTANCE_ANNOTATION = "usage.billing/instance-id"


@dataclass(frozen=True)
class Identity:
    customer_id: str
    instance_id: str
    source: str


def own_namespace(configured: str | None, namespace_file: Path) -> str | None:
    """AGENT_NAMESPACE (downward API), else the service account's namespace file."""
    if configured:
        return configured
    try:
        text = namespace_file.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return text or None


async def resolve_identity(
    customer_id: str | None,
    instance_id: str | None,
    *,
    namespace: str | None,
    read_namespace: Callable[[str], Awaitable[NamespaceInfo]] | None,
) -> Identity:
    """The customer and instance ids, or a ``ConfigurationError`` saying how to set them."""
    if customer_id and instance_id:
        return Identity(customer_id, instance_id, "settings")
    hint = (
        "set AGENT_CUSTOMER_ID (or CUSTOMER_ID) and AGENT_INSTANCE_ID (or INSTANCE_ID), or "
        f"annotate the agent's namespace with {CUSTOMER_ANNOTATION} (and optionally "
        f"{INSTANCE_ANNOTATION})"
    )
    if namespace is None or read_namespace is None:
        missing = "customer id" if not customer_id else "instance id"
        raise ConfigurationError(
            f"no {missing}: {hint}; the namespace is unknown (set AGENT_NAMESPACE)"
        )
    try:
        info = await read_namespace(namespace)
    except KubeRefused as exc:
        raise ConfigurationError(
            f"cannot read namespace {namespace} for the agent's identity ({exc}); {hint}, or "
            "grant `get` on it (chart: identity.fromNamespace=true)"
        ) from exc
    except KubeApiError as exc:
        raise ConfigurationError(f"cannot read namespace {namespace}: {exc}") from exc
    customer = customer_id or info.annotations.get(CUSTOMER_ANNOTATION, "").strip()
    instance = instance_id or info.annotations.get(INSTANCE_ANNOTATION, "").strip() or info.uid
    if not customer:
        raise ConfigurationError(
            f"no customer id: namespace {namespace} has no {CUSTOMER_ANNOTATION} annotation; {hint}"
        )
    if not instance:
        raise ConfigurationError(f"no instance id for namespace {namespace}: {hint}")
    return Identity(customer, instance, f"namespace/{namespace}")
