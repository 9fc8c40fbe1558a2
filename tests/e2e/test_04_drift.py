"""Scenario 4: hand edits of the children, changed values and fields added by hand, are put back within
10 seconds."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from tests.e2e import figures, kube, ports, traffic
from tests.e2e import scaledapi as sapi

LIMIT_S = 10.0


def _restored_within(
    what: str, check: Callable[[], bool], started: float, describe: Callable[[], str]
) -> float:
    """Poll until ``check`` holds, then assert it took at most LIMIT_S since ``started``."""
    kube.wait_for(check, 3 * LIMIT_S, 0.2, what=what, describe=describe)
    elapsed = time.monotonic() - started
    assert elapsed <= LIMIT_S, f"{what} took {elapsed:.1f} s (limit {LIMIT_S:.0f} s)"
    return round(elapsed, 2)


def test_drift_is_undone(namespace: str, name: str) -> None:
    kube.apply(sapi.manifest(namespace, replicas=2))
    sapi.wait_serving(namespace, name, 2)
    sapi.wait_config_applied(namespace, name)
    backend, proxy = f"{name}-backend", f"{name}-proxy"

    # The backend Deployment scaled by hand.
    started = time.monotonic()
    kube.kubectl("scale", f"deployment/{backend}", "--replicas=4", "-n", namespace)

    def replicas_back() -> bool:
        dep = kube.get_json("deployment", backend, namespace)
        return dep is not None and dep["spec"]["replicas"] == 2

    scale_s = _restored_within(
        f"deployment {backend} back at 2 replicas",
        replicas_back,
        started,
        lambda: json.dumps(
            (kube.get_json("deployment", backend, namespace) or {}).get("spec", {}).get("replicas")
        ),
    )
    sapi.wait_serving(namespace, name, 2, no_terminating=True)

    # The nginx ConfigMap edited by hand.
    cm = kube.get_json("configmap", proxy, namespace)
    assert cm is not None, f"configmap {proxy} is missing"
    original = cm["data"][kube.CONFIG_KEY]
    edited = original + "# edited by hand\n"
    started = time.monotonic()
    kube.kubectl(
        "patch", "configmap", proxy, "-n", namespace, "--type=merge",
        "-p", json.dumps({"data": {kube.CONFIG_KEY: edited}}),
    )  # fmt: skip

    def config_back() -> bool:
        current = kube.get_json("configmap", proxy, namespace)
        return current is not None and current["data"].get(kube.CONFIG_KEY) == original

    config_s = _restored_within(
        f"configmap {proxy} restored",
        config_back,
        started,
        lambda: str(
            (kube.get_json("configmap", proxy, namespace) or {}).get("data", {}).get(kube.CONFIG_KEY)
        ),
    )

    # Fields added by hand: a nodeSelector on the backend's pod template, externalIPs on its Service.
    started = time.monotonic()
    kube.kubectl(
        "patch", "deployment", backend, "-n", namespace, "--type=merge",
        "-p", json.dumps({"spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}}}}}),
    )  # fmt: skip
    kube.kubectl(
        "patch", "service", backend, "-n", namespace, "--type=merge",
        "-p", json.dumps({"spec": {"externalIPs": ["203.0.113.9"]}}),
    )  # fmt: skip

    def added_fields() -> list[str]:
        dep = kube.get_json("deployment", backend, namespace) or {}
        svc = kube.get_json("service", backend, namespace) or {}
        pod_spec = dep.get("spec", {}).get("template", {}).get("spec", {})
        found = ["nodeSelector"] if "nodeSelector" in pod_spec else []
        return found + (["externalIPs"] if "externalIPs" in svc.get("spec", {}) else [])

    added_s = _restored_within(
        "hand-added nodeSelector and externalIPs removed",
        lambda: added_fields() == [],
        started,
        lambda: f"still there: {added_fields()}",
    )
    sapi.wait_serving(namespace, name, 2, no_terminating=True)

    # The nginx Service deleted.
    svc = kube.get_json("service", proxy, namespace)
    assert svc is not None, f"service {proxy} is missing"
    old_uid = svc["metadata"]["uid"]
    started = time.monotonic()
    kube.kubectl("delete", "service", proxy, "-n", namespace)

    def service_back() -> bool:
        current = kube.get_json("service", proxy, namespace)
        return current is not None and current["metadata"]["uid"] != old_uid

    service_s = _restored_within(
        f"service {proxy} recreated",
        service_back,
        started,
        lambda: str(kube.get_json("service", proxy, namespace)),
    )
    recreated = kube.get_json("service", proxy, namespace)
    assert recreated is not None
    assert [p.get("nodePort") for p in recreated["spec"]["ports"]] == [ports.MAIN], recreated["spec"]
    kube.wait_for(
        lambda: traffic.hello().ok,
        30.0,
        0.2,
        what="localhost:8080 to answer again after the Service came back",
    )
    sapi.wait_serving(namespace, name, 2)

    figures.record(
        "4 drift",
        "restored after_s",
        {
            "backend deployment scaled": scale_s,
            "nginx configmap edited": config_s,
            "nodeSelector and externalIPs added": added_s,
            "nginx service deleted": service_s,
        },
    )
