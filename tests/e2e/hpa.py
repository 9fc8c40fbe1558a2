"""HorizontalPodAutoscalers on a ScaledApi, and the resource metrics (metrics-server) they read."""

from __future__ import annotations

import json
from typing import Any

from tests.e2e import kube

JSON = dict[str, Any]


def manifest(
    ns: str,
    name: str,
    max_replicas: int,
    cpu_utilization: int,
    scale_down_window: int,
    min_replicas: int = 1,
) -> JSON:
    """An autoscaling/v2 HPA on ScaledApi ``name`` with a CPU utilisation target.

    Scale-up reacts at once (window 0, up to 2 copies per 15 s); scale-down waits ``scale_down_window``
    seconds (the default five minutes would make a test wait that long) and may then go to the minimum.
    """
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "scaleTargetRef": {"apiVersion": kube.API_VERSION, "kind": kube.KIND, "name": name},
            "minReplicas": min_replicas,
            "maxReplicas": max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": cpu_utilization},
                    },
                }
            ],
            "behavior": {
                "scaleUp": {
                    "stabilizationWindowSeconds": 0,
                    "policies": [{"type": "Pods", "value": 2, "periodSeconds": 15}],
                },
                "scaleDown": {
                    "stabilizationWindowSeconds": scale_down_window,
                    "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
                },
            },
        },
    }


def get(ns: str, name: str) -> JSON | None:
    return kube.get_json("hpa", name, ns)


def describe(ns: str, name: str) -> str:
    obj = get(ns, name) or {}
    return json.dumps(obj.get("status", {}), sort_keys=True)


def cpu_utilization(ns: str, name: str) -> int | None:
    """The HPA's current average CPU utilisation in percent, None while it has no metric."""
    for metric in (get(ns, name) or {}).get("status", {}).get("currentMetrics") or []:
        current = metric.get("resource", {}).get("current", {})
        if metric.get("type") == "Resource" and "averageUtilization" in current:
            return int(current["averageUtilization"])
    return None


def wait_metrics_api(timeout: float = 180.0) -> JSON:
    """Wait until metrics.k8s.io (metrics-server, deployed by hack/up.sh) serves node metrics."""

    def nodes() -> JSON | None:
        listed: JSON = json.loads(kube.kubectl("get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes").stdout)
        return listed if listed.get("items") else None

    return kube.wait_for(
        nodes,
        timeout,
        2.0,
        what="metrics.k8s.io to serve node metrics (metrics-server from hack/addons)",
        describe=lambda: kube.kubectl(
            "get", "apiservice", "v1beta1.metrics.k8s.io", "-o", "jsonpath={.status.conditions}", check=False
        ).stdout,
    )
