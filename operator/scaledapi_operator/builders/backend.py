"""Desired state of the backend: Deployment, Service and PodDisruptionBudget (NAME-backend)."""

from __future__ import annotations

from typing import Any

from scaledapi_operator.builders.common import (
    BACKEND,
    Owner,
    backend_name,
    container_security_context,
    deployment,
    field_env,
    http_probe,
    metadata,
    pod_security_context,
    selector_labels,
)
from scaledapi_operator.endpoints import BACKEND_PORT_NAME
from scaledapi_operator.spec import ScaledApiSpec

BACKEND_USER = 10001
# Slack between the end of gunicorn's graceful shutdown and SIGKILL.
TERMINATION_MARGIN_SECONDS = 5


def termination_grace_period(spec: ScaledApiSpec) -> int:
    backend = spec.backend
    return backend.termination_delay_seconds + backend.graceful_shutdown_seconds + TERMINATION_MARGIN_SECONDS


def backend_deployment(owner: Owner, spec: ScaledApiSpec) -> dict[str, Any]:
    backend = spec.backend
    container: dict[str, Any] = {
        "name": "backend",
        "image": backend.image,
        "imagePullPolicy": backend.image_pull_policy,
        # No command: the image's default entrypoint starts gunicorn.
        "ports": [{"name": BACKEND_PORT_NAME, "containerPort": backend.port, "protocol": "TCP"}],
        "env": [
            field_env("POD_NAME", "metadata.name"),
            {"name": "PORT", "value": str(backend.port)},
            {"name": "GREETING", "value": backend.greeting},
            {"name": "GRACEFUL_TIMEOUT", "value": str(backend.graceful_shutdown_seconds)},
        ],
        "readinessProbe": http_probe(backend.port, period_seconds=2, failure_threshold=2),
        "livenessProbe": http_probe(backend.port, period_seconds=10, failure_threshold=3),
        # Keep serving while nginx drops this address from its upstream, then let gunicorn drain.
        "lifecycle": {
            "preStop": {"exec": {"command": ["/bin/sleep", str(backend.termination_delay_seconds)]}},
        },
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": container_security_context(BACKEND_USER),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - an emptyDir
    }
    pod_spec = {
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": termination_grace_period(spec),
        "securityContext": pod_security_context(BACKEND_USER),
        "containers": [container],
    }
    return deployment(owner, backend_name(owner), BACKEND, spec.replicas, pod_spec)


def backend_service(owner: Owner, spec: ScaledApiSpec) -> dict[str, Any]:
    port = spec.backend.port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, backend_name(owner), BACKEND),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(owner, BACKEND),
            # A named target port: while a change of spec.backend.port rolls out, each pod is reached
            # on its own containerPort, old and new alike.
            "ports": [{"name": "http", "port": port, "targetPort": BACKEND_PORT_NAME, "protocol": "TCP"}],
        },
    }


def backend_pdb(owner: Owner, spec: ScaledApiSpec) -> dict[str, Any] | None:
    """At most one backend pod voluntarily disrupted at a time; none when there is nothing to keep."""
    if spec.replicas <= 1:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(owner, backend_name(owner), BACKEND),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector_labels(owner, BACKEND)},
        },
    }
