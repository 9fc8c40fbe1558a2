"""spec.canary through the reconcile: NAME-canary made as the backend's pod with the canary's image,
the upstream weighted from both versions' slices, the status and events of the split, and a
promotion that leaves one plain upstream and removes only our canary."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from scaledapi_operator import builders
from scaledapi_operator.handlers import is_backend_slice
from scaledapi_operator.kube import KINDS
from scaledapi_operator.reconcile import CREATED, DELETED, UNCHANGED
from scaledapi_operator.spec import parse_spec
from scaledapi_operator.upstream import sync_upstream
from tests.unit.test_reconcile import CONTROLLER, FakeKube, reconcile, scaledapi

CANARY = {"image": "scaledapi/backend:v2", "weight": 20, "replicas": 1}
CHILD = ("Deployment", "demo", "hello-canary")


def with_canary(canary: dict[str, Any] | None = CANARY, **kwargs: Any) -> dict[str, Any]:
    body = scaledapi(**kwargs)
    if canary is not None:
        body["spec"]["canary"] = dict(canary)
    return body


def version_slice(service: str, *addresses: str) -> dict[str, Any]:
    return {
        "addressType": "IPv4",
        "metadata": {"labels": {"kubernetes.io/service-name": service} | CONTROLLER},
        "endpoints": [
            {"addresses": [a], "conditions": {"ready": True}, "targetRef": {"uid": a}} for a in addresses
        ],
    }


def servers(kube: FakeKube) -> list[str]:
    text = kube.objects[("ConfigMap", "demo", "hello-proxy")]["data"]["nginx.conf"]
    return [line.strip() for line in text.splitlines() if line.strip().startswith("server 10.")]


def test_the_canary_is_the_backends_pod_with_its_own_image_labels_and_count() -> None:
    owner = builders.Owner("hello", "demo", "uid")
    spec = parse_spec(with_canary()["spec"])
    stable, canary = builders.backend_deployment(owner, spec), builders.canary_deployment(owner, spec)
    assert canary is not None
    assert canary["metadata"]["name"] == "hello-canary"
    assert canary["spec"]["replicas"] == 1
    pod, stable_pod = canary["spec"]["template"]["spec"], stable["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "scaledapi/backend:v2"
    stable_container = copy.deepcopy(stable_pod["containers"][0])
    stable_container["image"] = "scaledapi/backend:v2"
    assert pod["containers"][0] == stable_container
    selector = canary["spec"]["selector"]["matchLabels"]
    assert selector["app.kubernetes.io/component"] == "canary"
    # The backend Service (and the scale subresource's selector) never pick up canary pods.
    assert stable["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "backend"
    service = builders.canary_service(owner, spec)
    assert service is not None and service["spec"]["selector"] == selector
    policy = builders.canary_network_policy(owner, spec)
    assert policy is not None and policy["spec"]["podSelector"]["matchLabels"] == selector


def test_a_canary_gets_its_children_and_exactly_its_weight_in_the_upstream() -> None:
    kube = FakeKube()
    kube.slices = [
        version_slice("hello-backend", "10.244.0.5", "10.244.0.6"),
        version_slice("hello-canary", "10.244.1.9"),
    ]
    outcome = reconcile(kube, with_canary())
    actions = {(a.kind, a.name): a.action for a in outcome.applied}
    for kind in ("Deployment", "Service", "NetworkPolicy"):
        assert actions[(kind, "hello-canary")] == CREATED
    assert servers(kube) == [
        "server 10.244.0.5:5252 weight=40 max_fails=1 fail_timeout=5s;",
        "server 10.244.0.6:5252 weight=40 max_fails=1 fail_timeout=5s;",
        "server 10.244.1.9:5252 weight=20 max_fails=1 fail_timeout=5s;",
    ]
    assert outcome.status["weights"] == {"stable": 80, "canary": 20}
    assert outcome.status["canary"]["image"] == "scaledapi/backend:v2"
    assert outcome.status["canary"]["weight"] == 20
    assert outcome.status["endpoints"] == ["10.244.0.5:5252", "10.244.0.6:5252", "10.244.1.9:5252"]
    events = [(t.reason, t.message) for t in outcome.transitions]
    assert ("TrafficSplitChanged", "requests now 80 % backend, 20 % canary") in events


def test_a_canary_that_is_not_ready_yet_gets_no_share_and_says_so() -> None:
    kube = FakeKube()
    kube.slices = [version_slice("hello-backend", "10.244.0.5", "10.244.0.6")]
    outcome = reconcile(kube, with_canary())
    assert outcome.status["weights"] == {"stable": 100, "canary": 0}
    assert all("weight=50" in server for server in servers(kube))
    messages = [t.message for t in outcome.transitions if t.reason == "TrafficSplitChanged"]
    assert messages == [
        "requests now 100 % backend, 0 % canary"
        " (spec.canary.weight 20: a version without a ready pod gets no share)"
    ]


def test_a_full_canary_serves_everything_while_the_backend_has_no_ready_pod() -> None:
    kube = FakeKube()
    kube.slices = [version_slice("hello-canary", "10.244.1.9", "10.244.1.10")]
    outcome = reconcile(kube, with_canary({**CANARY, "weight": 100, "replicas": 2}, replicas=0))
    assert outcome.status["weights"] == {"stable": 0, "canary": 100}
    assert servers(kube) == [
        "server 10.244.1.9:5252 weight=50 max_fails=1 fail_timeout=5s;",
        "server 10.244.1.10:5252 weight=50 max_fails=1 fail_timeout=5s;",
    ]


def test_a_weight_change_reaches_the_upstream_in_the_fast_path_too() -> None:
    kube = FakeKube()
    kube.slices = [version_slice("hello-backend", "10.244.0.5"), version_slice("hello-canary", "10.244.1.9")]
    outcome = reconcile(kube, with_canary({**CANARY, "weight": 50}))
    assert servers(kube)[0].startswith("server 10.244.0.5:5252 weight=50 ")
    # A second canary pod becomes ready: the fast path, with the plan's weight, splits the canary's 50.
    kube.slices[1] = version_slice("hello-canary", "10.244.1.9", "10.244.1.10")
    assert sync_upstream(kube, "demo", "hello").written
    assert servers(kube) == [
        "server 10.244.0.5:5252 weight=50 max_fails=1 fail_timeout=5s;",
        "server 10.244.1.9:5252 weight=25 max_fails=1 fail_timeout=5s;",
        "server 10.244.1.10:5252 weight=25 max_fails=1 fail_timeout=5s;",
    ]
    later = reconcile(kube, with_canary({**CANARY, "weight": 10}, status=outcome.status))
    assert later.status["weights"] == {"stable": 90, "canary": 10}
    assert "server 10.244.1.9:5252 weight=5 max_fails=1 fail_timeout=5s;" in servers(kube)


def test_promotion_leaves_a_plain_upstream_and_removes_only_our_canary() -> None:
    kube = FakeKube()
    kube.slices = [version_slice("hello-backend", "10.244.0.5"), version_slice("hello-canary", "10.244.1.9")]
    outcome = reconcile(kube, with_canary())
    promoted = scaledapi(status=outcome.status)
    promoted["spec"]["backend"]["image"] = CANARY["image"]
    after = reconcile(kube, promoted)
    actions = {(a.kind, a.name): a.action for a in after.applied}
    for kind in ("Deployment", "Service", "NetworkPolicy"):
        assert actions[(kind, "hello-canary")] == DELETED
        assert (kind, "demo", "hello-canary") not in kube.objects
    # The canary's slices are no longer read: only the backend's pods, at nginx's default weight.
    assert servers(kube) == ["server 10.244.0.5:5252 max_fails=1 fail_timeout=5s;"]
    assert "weights" not in after.status and "canary" not in after.status
    assert ("CanaryRemoved", "no canary: every request goes to the backend") in [
        (t.reason, t.message) for t in after.transitions
    ]
    image = kube.objects[("Deployment", "demo", "hello-backend")]["spec"]["template"]["spec"]["containers"]
    assert image[0]["image"] == CANARY["image"]
    again = reconcile(kube, scaledapi(status=after.status))
    assert {a.action for a in again.applied if a.name == "hello-canary"} == {UNCHANGED}


def test_a_users_deployment_named_like_the_canary_is_never_taken_nor_deleted() -> None:
    kube = FakeKube()
    users = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "hello-canary", "namespace": "demo", "uid": "users"},
        "spec": {"replicas": 3},
    }
    kube.objects[CHILD] = copy.deepcopy(users)
    outcome = reconcile(kube, with_canary())
    degraded = next(c for c in outcome.status["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "NameConflict"
    reconcile(kube, scaledapi(status=outcome.status))  # canary removed from the spec
    assert kube.objects[CHILD] == users


def test_the_canary_slices_trigger_the_fast_path() -> None:
    def labelled(service: str) -> dict[str, Any]:
        return {"metadata": {"labels": {"kubernetes.io/service-name": service} | CONTROLLER}}

    assert is_backend_slice(labelled("hello-canary"), "hello")
    assert is_backend_slice(labelled("hello-backend"), "hello")
    assert not is_backend_slice(labelled("hello-proxy"), "hello")
    by_hand = labelled("hello-backend")
    del by_hand["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"]
    assert not is_backend_slice(by_hand, "hello")  # not the EndpointSlice controller's: feeds nothing


def test_the_operator_may_delete_every_kind_it_removes() -> None:
    """A removal the ClusterRole does not allow is refused with 403 on a real cluster, and the
    canary would stay (found by e2e 19)."""
    docs = yaml.safe_load_all((Path(__file__).parents[2] / "manifests" / "rbac.yaml").read_text())
    role = next(d for d in docs if d and d["kind"] == "ClusterRole")
    removable = {"Deployment", "Service", "NetworkPolicy", "PodDisruptionBudget"}
    for kind in removable:
        group = KINDS[kind].api_version.rpartition("/")[0]
        rules = [r for r in role["rules"] if group in r["apiGroups"] and KINDS[kind].plural in r["resources"]]
        assert any("delete" in r["verbs"] for r in rules), f"{kind}: no delete in the ClusterRole"
