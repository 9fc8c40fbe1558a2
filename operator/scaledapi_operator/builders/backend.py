"""Desired state of the backend: Deployment, Service and PodDisruptionBudget (NAME-backend), and of
the canary beside it (Deployment and Service NAME-canary)."""

from __future__ import annotations

import dataclasses
from typing import Any

from scaledapi_operator.builders.common import (
    BACKEND,
    CANARY,
    RESTRICTED_CONTAINER,
    TERMINATION_MARGIN_SECONDS,
    Owner,
    backend_name,
    canary_name,
    deployment,
    disruption_budget,
    field_env,
    metadata,
    selector_labels,
)
from scaledapi_operator.container_spec import EXEC, HTTP, NO_CHECK, Check
from scaledapi_operator.endpoints import BACKEND_PORT_NAME
from scaledapi_operator.spec import BackendSpec, ScaledApiSpec

# Ports below this one need CAP_NET_BIND_SERVICE, which the restricted containers drop; the sysctl
# (a safe one, allowed under Pod Security "restricted") moves the limit to 0 in the pod's own network
# namespace, so that an API listening on :80 as uid 10001 can bind.
PRIVILEGED_PORTS_END = 1024
UNPRIVILEGED_PORT_SYSCTL = "net.ipv4.ip_unprivileged_port_start"


def termination_grace_period(spec: ScaledApiSpec) -> int:
    backend = spec.backend
    return backend.termination_delay_seconds + backend.graceful_shutdown_seconds + TERMINATION_MARGIN_SECONDS


def backend_env(backend: BackendSpec) -> list[dict[str, Any]]:
    """What every backend gets (its pod name, its port, its shutdown budget), then the user's env.

    Ours come first so that the user's values can refer to them as $(PORT); a name the user sets
    replaces ours. GREETING comes from the deprecated spec.backend.greeting, when set.
    """
    ours = [
        field_env("POD_NAME", "metadata.name"),
        {"name": "PORT", "value": str(backend.port)},
        {"name": "GRACEFUL_TIMEOUT", "value": str(backend.graceful_shutdown_seconds)},
    ]
    if backend.greeting is not None:
        ours.append({"name": "GREETING", "value": backend.greeting})
    users = [dict(item) for item in backend.container.env]
    taken = {item["name"] for item in users}
    return [item for item in ours if item["name"] not in taken] + users


def check_probe(check: Check) -> dict[str, Any]:
    """A probe on the named container port, so that it follows a change of spec.backend.port; or the
    check's command, run in the container."""
    action: dict[str, Any]
    if check.type == HTTP:
        action = {"httpGet": {"path": check.path, "port": BACKEND_PORT_NAME, "scheme": "HTTP"}}
    elif check.type == EXEC:
        action = {"exec": {"command": list(check.command or ())}}
    else:
        action = {"tcpSocket": {"port": BACKEND_PORT_NAME}}
    return {
        **action,
        "initialDelaySeconds": check.initial_delay_seconds,
        "periodSeconds": check.period_seconds,
        "timeoutSeconds": 1,
        "successThreshold": 1,
        "failureThreshold": check.failure_threshold,
    }


def backend_container(backend: BackendSpec) -> dict[str, Any]:
    shape = backend.container
    security = shape.security
    container: dict[str, Any] = {
        "name": "backend",
        "image": backend.image,
        "imagePullPolicy": backend.image_pull_policy,
        "ports": [{"name": BACKEND_PORT_NAME, "containerPort": backend.port, "protocol": "TCP"}],
        "env": backend_env(backend),
        "readinessProbe": check_probe(shape.readiness),
        "resources": {group: dict(amounts) for group, amounts in shape.resources.items()},
        "securityContext": {
            **RESTRICTED_CONTAINER,
            "runAsNonRoot": security.run_as_non_root,
            "readOnlyRootFilesystem": security.read_only_root_filesystem,
            "runAsUser": security.run_as_user,
            "runAsGroup": security.run_as_group,
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - an emptyDir
        # A container that exits with an error and wrote no /dev/termination-log gets the end of its log
        # as lastState.terminated.message: the Degraded condition quotes it (a port it could not bind).
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    # Unset: the image's own ENTRYPOINT, CMD and WORKDIR.
    optional = {"command": shape.command, "args": shape.args, "workingDir": shape.working_dir}
    container.update(
        {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in optional.items()
            if value is not None
        }
    )
    if shape.env_from:
        container["envFrom"] = [dict(item) for item in shape.env_from]
    if shape.liveness.type != NO_CHECK:
        container["livenessProbe"] = check_probe(shape.liveness)
    if backend.termination_delay_seconds > 0:
        # Keep serving while nginx drops this address from its upstream, then let the API drain. The
        # kubelet sleeps itself: the image needs no sleep binary.
        container["lifecycle"] = {"preStop": {"sleep": {"seconds": backend.termination_delay_seconds}}}
    return container


def backend_deployment(owner: Owner, spec: ScaledApiSpec) -> dict[str, Any]:
    return _api_deployment(owner, spec, backend_name(owner), BACKEND, spec.backend, spec.replicas)


def canary_deployment(owner: Owner, spec: ScaledApiSpec) -> dict[str, Any] | None:
    """NAME-canary: the backend's pod exactly, with the canary's image and replica count; None
    without spec.canary."""
    if spec.canary is None:
        return None
    backend = dataclasses.replace(spec.backend, image=spec.canary.image)
    return _api_deployment(owner, spec, canary_name(owner), CANARY, backend, spec.canary.replicas)


def _api_deployment(
    owner: Owner, spec: ScaledApiSpec, name: str, component: str, backend: BackendSpec, replicas: int
) -> dict[str, Any]:
    pod_spec = {
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": termination_grace_period(spec),
        "securityContext": backend_pod_security_context(backend),
        "containers": [backend_container(backend)],
    }
    return deployment(owner, name, component, replicas, pod_spec)


def backend_pod_security_context(backend: BackendSpec) -> dict[str, Any]:
    """The pod's securityContext; with a port below 1024, the sysctl that lets a process without
    capabilities bind it (the key is left out otherwise, and compare.py counts a left-over one as drift)."""
    security = backend.container.security
    context: dict[str, Any] = {
        "runAsNonRoot": security.run_as_non_root,
        "runAsUser": security.run_as_user,
        "runAsGroup": security.run_as_group,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if backend.port < PRIVILEGED_PORTS_END:
        context["sysctls"] = [{"name": UNPRIVILEGED_PORT_SYSCTL, "value": "0"}]
    return context


def backend_service(owner: Owner, spec: ScaledApiSpec) -> dict[str, Any]:
    return _api_service(owner, backend_name(owner), BACKEND, spec.backend.port)


def canary_service(owner: Owner, spec: ScaledApiSpec) -> dict[str, Any] | None:
    """NAME-canary's Service: nginx does not use its address, but its EndpointSlices are where the
    canary pods' readiness is read from, as NAME-backend's are for the stable pods."""
    if spec.canary is None:
        return None
    return _api_service(owner, canary_name(owner), CANARY, spec.backend.port)


def _api_service(owner: Owner, name: str, component: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, name, component),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(owner, component),
            # A named target port: while a change of spec.backend.port rolls out, each pod is reached
            # on its own containerPort, old and new alike.
            "ports": [{"name": "http", "port": port, "targetPort": BACKEND_PORT_NAME, "protocol": "TCP"}],
        },
    }


def backend_pdb(owner: Owner, spec: ScaledApiSpec) -> dict[str, Any] | None:
    return disruption_budget(owner, backend_name(owner), BACKEND, spec.replicas)
