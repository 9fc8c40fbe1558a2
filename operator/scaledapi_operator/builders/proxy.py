"""Desired state of the nginx proxy: ConfigMaps, Deployment, Service and its RBAC (NAME-proxy)."""

from __future__ import annotations

from typing import Any

from scaledapi_operator.builders.common import (
    CONFIG_HASH_ANNOTATION,
    CONFIG_KEY,
    PROXY,
    TERMINATION_MARGIN_SECONDS,
    Owner,
    container_security_context,
    deployment,
    disruption_budget,
    field_env,
    http_probe,
    metadata,
    pod_security_context,
    proxy_name,
    proxy_status_name,
    selector_labels,
)
from scaledapi_operator.nginx_conf import NginxSettings
from scaledapi_operator.spec import ScaledApiSpec

PROXY_USER = 101  # the nginx user of the nginx images
PROXY_CONTAINER_PORT = 8080
RUNTIME_DIR = "/tmp/nginx"  # noqa: S108 - on the pod's /tmp emptyDir
NGINX_CONF_PATH = f"{RUNTIME_DIR}/nginx.conf"
# The nginx container's port name: the NetworkPolicy NAME-proxy admits traffic to it.
PROXY_PORT_NAME = "http"
# The reloader's GET /metrics (scaledapi_proxy.metrics); 9113 is where nginx exporters usually listen.
PROXY_METRICS_PORT = 9113
METRICS_PORT_NAME = "metrics"


def nginx_settings(spec: ScaledApiSpec) -> NginxSettings:
    proxy = spec.proxy
    return NginxSettings(
        listen_port=PROXY_CONTAINER_PORT,
        runtime_dir=RUNTIME_DIR,
        worker_processes=proxy.worker_processes,
        next_upstream_tries=proxy.next_upstream_tries,
        upstream_timeout_seconds=proxy.upstream_timeout_seconds,
        access_log=proxy.access_log,
        scale_to_zero=spec.scale_to_zero,
        metrics=proxy.metrics,
    )


def proxy_configmap(owner: Owner, config_text: str, config_hash: str) -> dict[str, Any]:
    meta = metadata(owner, proxy_name(owner), PROXY)
    meta["annotations"] = {CONFIG_HASH_ANNOTATION: config_hash}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {CONFIG_KEY: config_text}}


def proxy_status_configmap(owner: Owner) -> dict[str, Any]:
    """The nginx pods report into it; the operator owns its metadata and never writes its data."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(owner, proxy_status_name(owner), PROXY),
    }


def proxy_service_account(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(owner, proxy_name(owner), PROXY),
    }


def proxy_role(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": metadata(owner, proxy_name(owner), PROXY),
        "rules": [
            # The reloader reads and watches its own nginx config (list/watch with a name field selector).
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": [proxy_name(owner)],
                "verbs": ["get", "list", "watch"],
            },
            # The reloader reports Applied/Rejected per pod by merge-patching its key of the status ConfigMap.
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": [proxy_status_name(owner)],
                "verbs": ["get", "patch"],
            },
        ],
    }


def proxy_role_binding(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": metadata(owner, proxy_name(owner), PROXY),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": proxy_name(owner)},
        "subjects": [{"kind": "ServiceAccount", "name": proxy_name(owner), "namespace": owner.namespace}],
    }


def proxy_termination_grace_period(spec: ScaledApiSpec) -> int:
    """The preStop delay, then the longest a proxied request may still take, then a margin."""
    proxy = spec.proxy
    return proxy.termination_delay_seconds + proxy.upstream_timeout_seconds + TERMINATION_MARGIN_SECONDS


def proxy_pdb(owner: Owner, spec: ScaledApiSpec) -> dict[str, Any] | None:
    return disruption_budget(owner, proxy_name(owner), PROXY, spec.proxy.replicas)


def proxy_deployment(owner: Owner, spec: ScaledApiSpec) -> dict[str, Any]:
    proxy = spec.proxy
    container: dict[str, Any] = {
        "name": "nginx",
        "image": proxy.image,
        "imagePullPolicy": proxy.image_pull_policy,
        "ports": [{"name": PROXY_PORT_NAME, "containerPort": PROXY_CONTAINER_PORT, "protocol": "TCP"}],
        "env": [
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
            {"name": "SCALEDAPI_CONFIGMAP", "value": proxy_name(owner)},
            {"name": "SCALEDAPI_STATUS_CONFIGMAP", "value": proxy_status_name(owner)},
            {"name": "NGINX_CONF_PATH", "value": NGINX_CONF_PATH},
            # 0: no metrics server (spec.proxy.metrics false).
            {"name": "SCALEDAPI_METRICS_PORT", "value": str(PROXY_METRICS_PORT if proxy.metrics else 0)},
        ],
        "readinessProbe": http_probe(PROXY_CONTAINER_PORT, period_seconds=2, failure_threshold=2),
        "livenessProbe": http_probe(PROXY_CONTAINER_PORT, period_seconds=10, failure_threshold=3),
        "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
        "securityContext": container_security_context(PROXY_USER),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - an emptyDir
    }
    if proxy.termination_delay_seconds > 0:
        # A stopping pod is taken out of the Service's endpoints at once, but kube-proxy on every node
        # (and a cloud load balancer) needs a moment to stop sending it new connections: keep accepting
        # meanwhile. Then the reloader turns SIGTERM into nginx's graceful stop (SIGQUIT).
        container["lifecycle"] = {"preStop": {"sleep": {"seconds": proxy.termination_delay_seconds}}}
    pod_spec = {
        "serviceAccountName": proxy_name(owner),
        "terminationGracePeriodSeconds": proxy_termination_grace_period(spec),
        "automountServiceAccountToken": True,  # the reloader watches its ConfigMap
        "securityContext": pod_security_context(PROXY_USER),
        "containers": [container],
    }
    if proxy.metrics:
        container["ports"].append(
            {"name": METRICS_PORT_NAME, "containerPort": PROXY_METRICS_PORT, "protocol": "TCP"}
        )
    built = deployment(owner, proxy_name(owner), PROXY, proxy.replicas, pod_spec)
    if proxy.metrics:
        # The annotations a Prometheus scrape config of Kubernetes pods usually keys on.
        built["spec"]["template"]["metadata"]["annotations"] = {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(PROXY_METRICS_PORT),
            "prometheus.io/path": "/metrics",
        }
    return built


def proxy_service(owner: Owner, spec: ScaledApiSpec) -> dict[str, Any]:
    proxy = spec.proxy
    port: dict[str, Any] = {
        "name": "http",
        "port": proxy.port,
        "targetPort": PROXY_CONTAINER_PORT,
        "protocol": "TCP",
    }
    if proxy.node_port is not None and proxy.service_type != "ClusterIP":
        port["nodePort"] = proxy.node_port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, proxy_name(owner), PROXY),
        "spec": {"type": proxy.service_type, "selector": selector_labels(owner, PROXY), "ports": [port]},
    }
