"""reconcile against an in-memory API: create, then nothing; drift repaired; 409 and conflicts."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from scaledapi_operator.handlers import owner_name
from scaledapi_operator.kube import Kube
from scaledapi_operator.reconcile import CONFLICT, CREATED, PATCHED, UNCHANGED, reconcile

NOW = "2025-01-01T00:00:00Z"


def merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch."""
    result = copy.deepcopy(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


class FakeKube(Kube):
    """Objects by (kind, namespace, name); the "server" adds defaults the builders never set."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, str, str]] = []
        self.conflict_on_create: set[str] = set()
        self.slices: list[dict[str, Any]] = []

    def _default(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        obj["metadata"].setdefault("uid", f"uid-{obj['kind']}-{obj['metadata']['name']}")
        obj["metadata"]["resourceVersion"] = str(len(self.writes))
        if obj["kind"] == "Deployment":
            obj["spec"].setdefault("revisionHistoryLimit", 10)
            for c in obj["spec"]["template"]["spec"]["containers"]:
                c.setdefault("terminationMessagePath", "/dev/termination-log")
        if obj["kind"] == "Service":
            obj["spec"].setdefault("clusterIP", "10.96.0.10")
        return obj

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found else None

    def create(self, body: dict[str, Any]) -> dict[str, Any] | None:
        key = (body["kind"], body["metadata"]["namespace"], body["metadata"]["name"])
        if key[2] in self.conflict_on_create:
            self.conflict_on_create.discard(key[2])
            self.objects[key] = self._default(body)  # someone else was faster
            return None
        if key in self.objects:
            return None
        self.writes.append(("create", *key[::2]))
        self.objects[key] = self._default(body)
        return copy.deepcopy(self.objects[key])

    def patch(
        self, kind: str, namespace: str, name: str, patch: dict[str, Any], content_type: str = ""
    ) -> dict[str, Any] | None:
        key = (kind, namespace, name)
        if key not in self.objects:
            return None
        self.writes.append(("patch", kind, name))
        self.objects[key] = self._default(merge(self.objects[key], patch))
        return copy.deepcopy(self.objects[key])

    def delete(self, kind: str, namespace: str, name: str, uid: str | None = None) -> None:
        if self.objects.pop((kind, namespace, name), None) is not None:
            self.writes.append(("delete", kind, name))

    def list_objects(
        self, kind: str, namespace: str | None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        if kind == "EndpointSlice":
            return copy.deepcopy(self.slices)
        return []

    def patch_scaledapi_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any] | None:
        self.writes.append(("status", "ScaledApi", name))
        return {}


def scaledapi(replicas: int = 2, status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "scaledapi.dev/v1alpha1",
        "kind": "ScaledApi",
        "metadata": {"name": "hello", "namespace": "demo", "uid": "owner-uid", "generation": 1},
        "spec": {
            "replicas": replicas,
            "backend": {"image": "scaledapi/backend:dev"},
            "proxy": {"image": "scaledapi/nginx:dev", "serviceType": "NodePort", "nodePort": 30080},
        },
        "status": status or {},
    }


def test_first_reconcile_creates_every_child() -> None:
    kube = FakeKube()
    outcome = reconcile(kube, scaledapi(), now=lambda: NOW)
    assert {a.action for a in outcome.applied} == {CREATED}
    assert len(outcome.applied) == 10
    assert ("PodDisruptionBudget", "demo", "hello-backend") in kube.objects
    assert outcome.status_written
    assert ("Normal", "Created") in [(t.type, t.reason) for t in outcome.transitions]


def test_second_reconcile_writes_nothing() -> None:
    kube = FakeKube()
    first = reconcile(kube, scaledapi(), now=lambda: NOW)
    kube.writes.clear()
    second = reconcile(kube, scaledapi(status=first.status), now=lambda: "2030-01-01T00:00:00Z")
    assert kube.writes == []
    assert {a.action for a in second.applied} == {UNCHANGED}
    assert not second.status_written
    assert second.transitions == []


def test_drift_is_repaired() -> None:
    kube = FakeKube()
    first = reconcile(kube, scaledapi(), now=lambda: NOW)
    deployment = kube.objects[("Deployment", "demo", "hello-backend")]
    deployment["spec"]["replicas"] = 7
    deployment["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "HAND", "value": "x"})
    del kube.objects[("Service", "demo", "hello-proxy")]
    kube.writes.clear()
    outcome = reconcile(kube, scaledapi(status=first.status), now=lambda: NOW)
    actions = {(a.kind, a.name): a.action for a in outcome.applied}
    assert actions[("Deployment", "hello-backend")] == PATCHED
    assert actions[("Service", "hello-proxy")] == CREATED
    repaired = kube.objects[("Deployment", "demo", "hello-backend")]
    assert repaired["spec"]["replicas"] == 2
    assert [e["name"] for e in repaired["spec"]["template"]["spec"]["containers"][0]["env"]] == [
        "POD_NAME",
        "PORT",
        "GREETING",
        "GRACEFUL_TIMEOUT",
    ]
    assert repaired["spec"]["revisionHistoryLimit"] == 10  # server defaults survive the merge patch
    kube.writes.clear()
    reconcile(kube, scaledapi(status=outcome.status), now=lambda: NOW)
    assert kube.writes == []


def test_scaling_to_one_removes_the_pdb() -> None:
    kube = FakeKube()
    reconcile(kube, scaledapi(replicas=2), now=lambda: NOW)
    reconcile(kube, scaledapi(replicas=1), now=lambda: NOW)
    assert ("PodDisruptionBudget", "demo", "hello-backend") not in kube.objects
    assert kube.objects[("Deployment", "demo", "hello-backend")]["spec"]["replicas"] == 1


def test_conflict_on_create_rereads_and_compares() -> None:
    kube = FakeKube()
    kube.conflict_on_create.add("hello-proxy-status")
    outcome = reconcile(kube, scaledapi(), now=lambda: NOW)
    actions = {(a.kind, a.name): a.action for a in outcome.applied}
    assert actions[("ConfigMap", "hello-proxy-status")] == UNCHANGED


def test_child_of_someone_else_is_left_alone_and_degrades() -> None:
    kube = FakeKube()
    foreign = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "hello-proxy",
            "namespace": "demo",
            "ownerReferences": [{"kind": "Other", "name": "x", "uid": "other", "controller": True}],
        },
        "spec": {"type": "ClusterIP"},
    }
    kube.objects[("Service", "demo", "hello-proxy")] = foreign
    outcome = reconcile(kube, scaledapi(), now=lambda: NOW)
    actions = {(a.kind, a.name): a.action for a in outcome.applied}
    assert actions[("Service", "hello-proxy")] == CONFLICT
    assert kube.objects[("Service", "demo", "hello-proxy")]["spec"] == {"type": "ClusterIP"}
    degraded = next(c for c in outcome.status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "NameConflict")


def test_ready_endpoints_reach_the_nginx_config() -> None:
    kube = FakeKube()
    kube.slices = [
        {
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.244.0.7"], "conditions": {"ready": True}},
                {"addresses": ["10.244.0.5"], "conditions": {"ready": True}},
                {"addresses": ["10.244.0.9"], "conditions": {"ready": False, "terminating": True}},
            ],
        }
    ]
    outcome = reconcile(kube, scaledapi(), now=lambda: NOW)
    cm = kube.objects[("ConfigMap", "demo", "hello-proxy")]
    text = cm["data"]["nginx.conf"]
    assert "10.244.0.5:5252" in text and "10.244.0.7:5252" in text
    assert "10.244.0.9" not in text
    assert outcome.status["endpoints"] == ["10.244.0.5:5252", "10.244.0.7:5252"]
    assert cm["metadata"]["annotations"]["scaledapi.dev/config-hash"] == outcome.status["proxyConfigHash"]
    kube.slices[0]["endpoints"][2]["conditions"]["ready"] = True
    kube.writes.clear()
    after = reconcile(kube, scaledapi(status=outcome.status), now=lambda: NOW)
    assert ("patch", "ConfigMap", "hello-proxy") in kube.writes
    assert ("Normal", "ProxyConfigUpdated") in [(t.type, t.reason) for t in after.transitions]


def test_status_configmap_data_is_never_overwritten() -> None:
    kube = FakeKube()
    reconcile(kube, scaledapi(), now=lambda: NOW)
    reports = {"p-1": json.dumps({"hash": "x", "state": "Applied"})}
    kube.objects[("ConfigMap", "demo", "hello-proxy-status")]["data"] = reports
    kube.objects[("ConfigMap", "demo", "hello-proxy-status")]["metadata"]["labels"] = {}  # drift
    reconcile(kube, scaledapi(), now=lambda: NOW)
    repaired = kube.objects[("ConfigMap", "demo", "hello-proxy-status")]
    assert repaired["data"] == reports
    assert repaired["metadata"]["labels"]["app.kubernetes.io/instance"] == "hello"


def test_invalid_spec_writes_degraded_status_and_touches_no_child() -> None:
    kube = FakeKube()
    body = scaledapi()
    body["spec"]["replicas"] = 99
    outcome = reconcile(kube, body, now=lambda: NOW)
    assert kube.objects == {}
    degraded = next(c for c in outcome.status["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "InvalidSpec" and "spec.replicas" in degraded["message"]


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        (
            {
                "ownerReferences": [
                    {
                        "apiVersion": "scaledapi.dev/v1alpha1",
                        "kind": "ScaledApi",
                        "name": "a",
                        "controller": True,
                    }
                ]
            },
            "a",
        ),
        (
            {
                "labels": {
                    "app.kubernetes.io/managed-by": "scaledapi-operator",
                    "app.kubernetes.io/instance": "b",
                },
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Service", "name": "b-backend", "controller": True}
                ],
            },
            "b",
        ),
        ({"labels": {"app.kubernetes.io/instance": "c"}}, None),
        ({}, None),
    ],
)
def test_owner_of_a_child_event(meta: dict[str, Any], expected: str | None) -> None:
    assert owner_name({"metadata": meta}) == expected
