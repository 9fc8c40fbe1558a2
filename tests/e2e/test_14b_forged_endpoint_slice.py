"""Scenario 14b: an EndpointSlice that the EndpointSlice controller did not write feeds nginx nothing.

Anyone who may create EndpointSlices in a namespace can label one `kubernetes.io/service-name=NAME-backend`
(and with the labels the operator watches). Its address must never become an upstream: the operator
uses only slices labelled `endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io`, and
logs the other one once. The slice below carries our labels, so its creation triggers a pass at once.
"""

from __future__ import annotations

from tests.e2e import kube
from tests.e2e import scaledapi as sapi

FORGED_ADDRESS = "10.99.99.99"


def forged_slice(ns: str, name: str, port: int) -> kube.JSON:
    labels = {
        "kubernetes.io/service-name": f"{name}-backend",
        "endpointslice.kubernetes.io/managed-by": "someone-else",
        kube.LABEL_MANAGED_BY: "scaledapi-operator",
        kube.LABEL_INSTANCE: name,
        kube.LABEL_NAME: "scaledapi",
        kube.LABEL_COMPONENT: "backend",
    }
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": f"{name}-backend-forged", "namespace": ns, "labels": labels},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [FORGED_ADDRESS], "conditions": {"ready": True}}],
    }


def test_a_forged_endpoint_slice_feeds_nginx_nothing(namespace: str, name: str) -> None:
    kube.apply(sapi.manifest(namespace, replicas=2, node_port=None))
    sapi.wait_ready(namespace, name)
    port = int(sapi.load_sample()["spec"]["backend"].get("port", 5252))
    kube.apply(forged_slice(namespace, name, port))

    # The leader lists the slice in its next pass (its creation triggers one) and says it ignores it.
    def logged() -> bool:
        leader = kube.operator_leader()
        if leader is None:
            return False
        logs = kube.kubectl("logs", "-n", kube.OPERATOR_NAMESPACE, leader, "--since=5m", check=False).stdout
        return f"EndpointSlice {name}-backend-forged is ignored" in logs

    kube.wait_for(logged, 60.0, 1.0, what="the operator to log the forged slice as ignored")
    status = (sapi.get(namespace, name) or {}).get("status") or {}
    assert len(status.get("endpoints") or []) == 2, status
    assert not any(FORGED_ADDRESS in e for e in status.get("endpoints") or []), status
    config = kube.get_json("configmap", f"{name}-proxy", namespace)
    assert config is not None
    assert FORGED_ADDRESS not in config["data"][kube.CONFIG_KEY]
