"""Scenario 9: the scale subresource shows replicas and selector, and an HPA can read it.

Whether the HPA acts on CPU is scenario 18 (metrics-server, deployed by make up); here it must only
never report a failure to read the scale of its target (AbleToScale True, reason SucceededGetScale).
"""

from __future__ import annotations

import json
from typing import Any

from tests.e2e import figures, kube
from tests.e2e import scaledapi as sapi

BAD_REASONS = ("FailedGetScale", "InvalidSelector", "FailedUpdateScale")


def test_scale_subresource_and_hpa(namespace: str, name: str) -> None:
    kube.apply(sapi.manifest(namespace, replicas=2))
    sapi.wait_serving(namespace, name, 2)
    path = f"/apis/{kube.API_VERSION}/namespaces/{namespace}/{kube.PLURAL}/{name}/scale"

    def scale_object() -> dict[str, Any] | None:
        scale: dict[str, Any] = json.loads(kube.kubectl("get", "--raw", path).stdout)
        return scale if scale.get("status", {}).get("replicas") == 2 else None

    scale = kube.wait_for(scale_object, 60.0, 0.5, what=f"{path} to show 2 replicas in its status")
    assert scale["kind"] == "Scale", scale
    assert scale["spec"]["replicas"] == 2, scale
    assert scale["status"]["selector"] == kube.backend_selector(name), scale

    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": kube.API_VERSION, "kind": kube.KIND, "name": name},
            "minReplicas": 1,
            "maxReplicas": 3,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
                }
            ],
        },
    }
    kube.apply(hpa)

    def conditions() -> list[dict[str, Any]]:
        obj = kube.get_json("hpa", name, namespace) or {}
        found: list[dict[str, Any]] = obj.get("status", {}).get("conditions") or []
        return found

    def able_to_scale() -> dict[str, Any] | None:
        current = conditions()
        bad = [c for c in current if c.get("reason") in BAD_REASONS]
        if bad:
            raise AssertionError(f"the HPA cannot read the scale: {bad}")
        return next(
            (c for c in current if c.get("type") == "AbleToScale" and c.get("status") == "True"), None
        )

    able = kube.wait_for(
        able_to_scale,
        120.0,
        1.0,
        what="the HPA to report AbleToScale",
        describe=lambda: json.dumps(conditions()),
    )
    # AbleToScale True says the HPA read the scale; its reason says what it made of it: SucceededGetScale,
    # or, once metrics-server has the pods' CPU (at once on a busy cluster), ScaleDownStabilized or
    # ReadyForNewScale. Only the BAD_REASONS above are failures to read it.
    assert able.get("reason") not in BAD_REASONS, able
    events = kube.list_json("events", namespace)
    failed = [
        e.get("message")
        for e in events
        if e.get("involvedObject", {}).get("kind") == "HorizontalPodAutoscaler"
        and e.get("reason") in BAD_REASONS
    ]
    assert not failed, f"HPA events report failures to read the scale: {failed}"
    figures.record("9 scale subresource", "scale", {"spec": scale["spec"], "status": scale["status"]})
    figures.record("9 scale subresource", "HPA conditions", [
        f"{c.get('type')}={c.get('status')} ({c.get('reason')})" for c in conditions()
    ])  # fmt: skip
