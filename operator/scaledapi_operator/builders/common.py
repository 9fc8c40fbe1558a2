"""Names, labels, selectors and owner references shared by every child of a ScaledApi."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scaledapi_operator import API_VERSION, KIND

BACKEND = "backend"
CANARY = "canary"
PROXY = "proxy"
MANAGED_BY = "scaledapi-operator"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
CONFIG_KEY = "nginx.conf"
CONFIG_HASH_ANNOTATION = "scaledapi.dev/config-hash"
# Slack between the end of a container's graceful stop and SIGKILL, in every pod's grace period.
TERMINATION_MARGIN_SECONDS = 5

# Container-level settings every pod shares (Pod Security "restricted").
RESTRICTED_CONTAINER: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


@dataclass(frozen=True)
class Owner:
    """Identity of the ScaledApi that owns the children."""

    name: str
    namespace: str
    uid: str
    generation: int = 0


def backend_name(owner: Owner) -> str:
    return backend_name_of(owner.name)


def backend_name_of(scaledapi: str) -> str:
    """The backend Deployment and Service of the ScaledApi named `scaledapi`."""
    return f"{scaledapi}-backend"


def canary_name(owner: Owner) -> str:
    return canary_name_of(owner.name)


def canary_name_of(scaledapi: str) -> str:
    """The canary Deployment, Service and NetworkPolicy of the ScaledApi named `scaledapi`."""
    return f"{scaledapi}-canary"


def proxy_name(owner: Owner) -> str:
    return f"{owner.name}-proxy"


def proxy_status_name(owner: Owner) -> str:
    return proxy_status_name_of(owner.name)


def proxy_status_name_of(scaledapi: str) -> str:
    """The ConfigMap where the nginx pods of the ScaledApi named `scaledapi` report."""
    return f"{scaledapi}-proxy-status"


def selector_labels(owner: Owner, component: str) -> dict[str, str]:
    """The immutable pod selector of a component's Deployment and Service."""
    return {LABEL_NAME: "scaledapi", LABEL_INSTANCE: owner.name, LABEL_COMPONENT: component}


def labels(owner: Owner, component: str) -> dict[str, str]:
    """Labels on every child and pod."""
    return {**selector_labels(owner, component), LABEL_MANAGED_BY: MANAGED_BY}


def selector_string(owner: Owner, component: str = BACKEND) -> str:
    """The label selector as a string, keys sorted (status.selector for the scale subresource)."""
    return ",".join(f"{key}={value}" for key, value in sorted(selector_labels(owner, component).items()))


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(owner: Owner, name: str, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(owner, component),
        "ownerReferences": [owner_reference(owner)],
    }


def pod_security_context(user: int) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": user,
        "runAsGroup": user,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context(user: int) -> dict[str, Any]:
    return {**RESTRICTED_CONTAINER, "runAsUser": user, "runAsGroup": user}


def field_env(name: str, field_path: str) -> dict[str, Any]:
    """An environment variable from the downward API."""
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": field_path}}}


def http_probe(port: int, period_seconds: int, failure_threshold: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": "/healthz", "port": port},
        "periodSeconds": period_seconds,
        "timeoutSeconds": 1,
        "successThreshold": 1,
        "failureThreshold": failure_threshold,
    }


def deployment(
    owner: Owner, name: str, component: str, replicas: int, pod_spec: dict[str, Any]
) -> dict[str, Any]:
    """A component's Deployment: its fixed selector, our labels on the pods, a rolling update that
    never takes a ready pod away before its replacement is ready, and its pods spread over the nodes.

    Every pod gets a writable /tmp (an emptyDir; the root filesystems are read-only), which the
    component's containers mount themselves.
    """
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(owner, name, component),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector_labels(owner, component)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels(owner, component)},
                "spec": {
                    **pod_spec,
                    "topologySpreadConstraints": [spread_over_nodes(owner, component)],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


def spread_over_nodes(owner: Owner, component: str) -> dict[str, Any]:
    """Copies of a component on as many nodes as there are: a lost or drained node takes only its share.

    ScheduleAnyway, so that a cluster of one node (or a full one) still runs every copy.
    """
    return {
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": selector_labels(owner, component)},
        # Each revision spread on its own: a rolling update does not stack the new pods on one node.
        "matchLabelKeys": ["pod-template-hash"],
    }


def disruption_budget(owner: Owner, name: str, component: str, replicas: int) -> dict[str, Any] | None:
    """At most one pod of a component voluntarily disrupted at a time (a drain, an eviction); none when
    it has one copy, so that a drain is never blocked for ever by a budget that can't be met."""
    if replicas <= 1:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(owner, name, component),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(owner, component)}},
    }
