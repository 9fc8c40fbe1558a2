"""Desired NetworkPolicies: backends reachable only through their own proxy, the proxy on its port, its
metrics only from its own namespace and the monitoring namespace.

Without them any pod in the cluster can call the backend pods directly and bypass nginx, or read the
nginx pods' metrics (per-copy addresses and request counts). Ingress only: what the pods call out to is
the API's business. The kubelet's probes come from the node, which policy implementations let through
to its own pods. Enforcement is the CNI's: on one that has no NetworkPolicy support (the air-gapped
stand-in, hack/airgap/kindnetd) the objects exist and do nothing.
"""

from __future__ import annotations

from typing import Any

from scaledapi_operator.builders.common import (
    BACKEND,
    CANARY,
    PROXY,
    Owner,
    backend_name,
    canary_name,
    metadata,
    proxy_name,
    selector_labels,
)
from scaledapi_operator.builders.proxy import METRICS_PORT_NAME, PROXY_PORT_NAME
from scaledapi_operator.endpoints import BACKEND_PORT_NAME
from scaledapi_operator.spec import ScaledApiSpec

# The label the API server puts on every namespace, with its name (a namespaceSelector can use it).
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def _policy(owner: Owner, name: str, component: str, *rules: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(owner, name, component),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(owner, component)},
            # Stated, not left to the API server's default, so that the stored object matches ours.
            "policyTypes": ["Ingress"],
            "ingress": list(rules),
        },
    }


def backend_network_policy(owner: Owner) -> dict[str, Any]:
    """Backend pods accept connections only from this ScaledApi's nginx pods, on the API's port (the
    named port, which follows spec.backend.port as the Service's targetPort does)."""
    return _api_policy(owner, backend_name(owner), BACKEND)


def canary_network_policy(owner: Owner, spec: ScaledApiSpec) -> dict[str, Any] | None:
    """The same for the canary pods; None without spec.canary."""
    if spec.canary is None:
        return None
    return _api_policy(owner, canary_name(owner), CANARY)


def _api_policy(owner: Owner, name: str, component: str) -> dict[str, Any]:
    return _policy(
        owner,
        name,
        component,
        {
            "from": [{"podSelector": {"matchLabels": selector_labels(owner, PROXY)}}],
            "ports": [{"protocol": "TCP", "port": BACKEND_PORT_NAME}],
        },
    )


def proxy_network_policy(owner: Owner, monitoring_namespace: str | None = None) -> dict[str, Any]:
    """nginx pods accept connections from anywhere on their port; on the metrics port only from the pods
    of their own namespace and of `monitoring_namespace` (the operator's SCALEDAPI_MONITORING_NAMESPACE,
    settings.py; None: their own namespace only). A named port that a pod without metrics does not have
    admits nothing."""
    scrapers: list[dict[str, Any]] = [{"podSelector": {}}]  # every pod of the policy's own namespace
    if monitoring_namespace and monitoring_namespace != owner.namespace:
        scrapers.append({"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: monitoring_namespace}}})
    return _policy(
        owner,
        proxy_name(owner),
        PROXY,
        {"ports": [{"protocol": "TCP", "port": PROXY_PORT_NAME}]},
        {"from": scrapers, "ports": [{"protocol": "TCP", "port": METRICS_PORT_NAME}]},
    )
