"""reconcile against an in-memory API: create, then nothing; drift repaired; 409 and conflicts;
objects that are not ours left alone unless annotated for adoption; a refused child recorded in the
status while every other child is still reconciled."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from scaledapi_operator.cache import CHILDREN
from scaledapi_operator.endpoints import SERVICE_NAME_LABEL, SLICE_CONTROLLER, SLICE_MANAGED_BY_LABEL
from scaledapi_operator.handlers import owner_name
from scaledapi_operator.kube import ApiError, Kube
from scaledapi_operator.ownership import ADOPT_ANNOTATION
from scaledapi_operator.reconcile import (
    ADOPTED,
    CONFLICT,
    CREATED,
    FAILED,
    HELD,
    PATCHED,
    UNCHANGED,
    Outcome,
)
from scaledapi_operator.reconcile import reconcile as reconcile_once

NOW = "2025-01-01T00:00:00Z"
# The label the EndpointSlice controller puts on the slices it writes: only those feed nginx.
CONTROLLER = {SLICE_MANAGED_BY_LABEL: SLICE_CONTROLLER}


def reconcile(kube: FakeKube, body: dict[str, Any], now: Callable[[], str] = lambda: NOW) -> Outcome:
    """One pass, after the fake's watch delivered every change made to its objects (as by hand)."""
    kube.caught_up_watch()
    return reconcile_once(kube, body, now=now)


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


def _selector_terms(selector: str) -> list[str]:
    """`a=b,c in (d,e)` -> ["a=b", "c in (d,e)"]: commas inside parentheses belong to their term."""
    terms, depth, start = [], 0, 0
    for index, char in enumerate(selector):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(selector[start:index])
            start = index + 1
    terms.append(selector[start:])
    return [term.strip() for term in terms if term.strip()]


def matches(obj: dict[str, Any], selector: str | None) -> bool:
    """A label selector of the forms the operator sends: `key=value` and `key in (a,b)` terms."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in _selector_terms(selector or ""):
        if " in (" in term:
            key, values = term.split(" in (", 1)
            if labels.get(key.strip()) not in {v.strip() for v in values.rstrip(")").split(",")}:
                return False
        else:
            key, value = term.split("=", 1)
            if labels.get(key) != value:
                return False
    return True


def refusal(status: int, message: str, reason: str = "Invalid") -> ApiError:
    """An error answer of the API server, with its Status object as the body."""
    body = json.dumps({"kind": "Status", "status": "Failure", "message": message, "reason": reason})
    return ApiError(status=status, reason=reason, body=body)


class FakeKube(Kube):
    """Objects by (kind, namespace, name); the "server" adds defaults the builders never set.

    `refuse[(verb, kind, name)]` is raised instead of doing that verb (create, patch, get, delete).
    The ScaledApis themselves are kept in `scaledapis`, and their status patches are merged in.
    """

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, str, str]] = []
        self.conflict_on_create: set[str] = set()
        self.slices: list[dict[str, Any]] = []
        self.pods: list[dict[str, Any]] = []
        self.refuse: dict[tuple[str, str, str], Exception] = {}
        self.scaledapis: dict[tuple[str, str], dict[str, Any]] = {}
        self.events: list[tuple[str, str, str]] = []  # (type, reason, message) posted directly

    def _check(self, verb: str, kind: str, name: str) -> None:
        error = self.refuse.get((verb, kind, name))
        if error is not None:
            raise error

    def _default(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        obj["metadata"].setdefault("uid", f"uid-{obj['kind']}-{obj['metadata']['name']}")
        obj["metadata"]["resourceVersion"] = str(len(self.writes))
        if obj["kind"] == "Deployment":
            obj["spec"].setdefault("revisionHistoryLimit", 10)
            for c in obj["spec"]["template"]["spec"]["containers"]:
                c.setdefault("terminationMessagePath", "/dev/termination-log")
                # omitempty, as the real API server: zero probe fields and empty env values are not stored.
                for probe in (c.get(key) for key in ("readinessProbe", "livenessProbe")):
                    for field in [k for k, v in (probe or {}).items() if v == 0]:
                        del probe[field]
                for env in c.get("env") or []:
                    if env.get("value") == "":
                        del env["value"]
        if obj["kind"] == "Service":
            obj["spec"].setdefault("clusterIP", "10.96.0.10")
        return obj

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self._check("get", kind, name)
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found else None

    def create(self, body: dict[str, Any]) -> dict[str, Any] | None:
        key = (body["kind"], body["metadata"]["namespace"], body["metadata"]["name"])
        self._check("create", key[0], key[2])
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
        self._check("patch", kind, name)
        if key not in self.objects:
            return None
        self.writes.append(("patch", kind, name))
        self.objects[key] = self._default(merge(self.objects[key], patch))
        return copy.deepcopy(self.objects[key])

    def delete(self, kind: str, namespace: str, name: str, uid: str | None = None) -> None:
        self._check("delete", kind, name)
        if self.objects.pop((kind, namespace, name), None) is not None:
            self.writes.append(("delete", kind, name))

    def list_objects(
        self, kind: str, namespace: str | None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        self._check("list", kind, "")
        if kind == "EndpointSlice":
            return [copy.deepcopy(s) for s in self.slices if matches(s, label_selector)]
        if kind == "Pod":
            return [copy.deepcopy(pod) for pod in self.pods if matches(pod, label_selector)]
        return []

    def post_event(self, involved: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        self.events.append((event_type, reason, message))

    def caught_up_watch(self) -> None:
        """What the operator's watches have delivered by the time a pass starts: every object labelled
        as ours, as it is now (the real watches lag a little; cache.py says why that is harmless).
        Objects without our label (a user's) are not watched, so never cached: a pass reads them."""
        CHILDREN.clear()
        for obj in self.objects.values():
            labels = obj["metadata"].get("labels") or {}
            if labels.get("app.kubernetes.io/managed-by") == "scaledapi-operator":
                CHILDREN.put(copy.deepcopy(obj))

    def get_scaledapi(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.caught_up_watch()
        self._check("get", "ScaledApi", name)
        found = self.scaledapis.get((namespace, name))
        return copy.deepcopy(found) if found else None

    def patch_scaledapi_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any] | None:
        self._check("patch", "ScaledApi/status", name)
        self.writes.append(("status", "ScaledApi", name))
        stored = self.scaledapis.get((namespace, name))
        if stored is not None:
            stored["status"] = merge(stored.get("status") or {}, status)
        return {}


def scaledapi(replicas: int = 2, status: dict[str, Any] | None = None, name: str = "hello") -> dict[str, Any]:
    return {
        "apiVersion": "scaledapi.dev/v1alpha1",
        "kind": "ScaledApi",
        "metadata": {"name": name, "namespace": "demo", "uid": "owner-uid", "generation": 1},
        "spec": {
            "replicas": replicas,
            "backend": {"image": "scaledapi/backend:dev"},
            "proxy": {"image": "scaledapi/nginx:dev", "serviceType": "NodePort", "nodePort": 30080},
        },
        "status": status or {},
    }


CANARY_KINDS = ("Deployment", "Service", "NetworkPolicy")


def test_first_reconcile_creates_every_child() -> None:
    kube = FakeKube()
    outcome = reconcile(kube, scaledapi(), now=lambda: NOW)
    created = [a for a in outcome.applied if a.action == CREATED]
    assert len(created) == 12
    # One proxy copy: no budget for it; no canary; nothing to remove.
    assert [(a.action, a.kind, a.name) for a in outcome.applied if a.action != CREATED] == [
        (UNCHANGED, "Deployment", "hello-canary"),
        (UNCHANGED, "Service", "hello-canary"),
        (UNCHANGED, "NetworkPolicy", "hello-canary"),
        (UNCHANGED, "PodDisruptionBudget", "hello-proxy"),
    ]
    assert ("PodDisruptionBudget", "demo", "hello-backend") in kube.objects
    assert ("PodDisruptionBudget", "demo", "hello-proxy") not in kube.objects
    assert outcome.status_written
    assert ("Normal", "Created") in [(t.type, t.reason) for t in outcome.transitions]


def test_a_second_proxy_copy_gets_a_budget_and_loses_it_again() -> None:
    kube = FakeKube()
    two_proxies = scaledapi()
    two_proxies["spec"]["proxy"]["replicas"] = 2
    reconcile(kube, two_proxies, now=lambda: NOW)
    budget = kube.objects[("PodDisruptionBudget", "demo", "hello-proxy")]
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "proxy"
    reconcile(kube, scaledapi(), now=lambda: NOW)
    assert ("PodDisruptionBudget", "demo", "hello-proxy") not in kube.objects
    assert ("PodDisruptionBudget", "demo", "hello-backend") in kube.objects


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


def degraded_of(status: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in status["conditions"] if c["type"] == "Degraded")
    return found


def users_configmap(annotations: dict[str, str] | None = None, **meta: Any) -> dict[str, Any]:
    """A ConfigMap a user made before the ScaledApi, with one of its children's names."""
    metadata: dict[str, Any] = {"name": "hello-proxy", "namespace": "demo", "uid": "users-uid", **meta}
    if annotations is not None:
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {"keep": "me"}}


def test_an_object_owned_by_no_one_is_never_touched_and_degrades() -> None:
    kube = FakeKube()
    before = users_configmap()
    kube.objects[("ConfigMap", "demo", "hello-proxy")] = copy.deepcopy(before)
    outcome = reconcile(kube, scaledapi(), now=lambda: NOW)
    actions = {(a.kind, a.name): a.action for a in outcome.applied}
    assert actions.pop(("ConfigMap", "hello-proxy")) == CONFLICT
    # The nginx pods would read it: their Deployment waits; every other child is still made.
    assert actions.pop(("Deployment", "hello-proxy")) == HELD
    assert actions.pop(("PodDisruptionBudget", "hello-proxy")) == UNCHANGED  # one proxy copy: none
    assert {actions.pop((kind, "hello-canary")) for kind in CANARY_KINDS} == {UNCHANGED}  # no canary
    assert set(actions.values()) == {CREATED}
    assert kube.objects[("ConfigMap", "demo", "hello-proxy")] == before  # no owner reference, no data
    assert not [w for w in kube.writes if w[1:] == ("ConfigMap", "hello-proxy")]
    degraded = degraded_of(outcome.status)
    assert (degraded["status"], degraded["reason"]) == ("True", "NameConflict")
    message = degraded["message"]
    assert "ConfigMap/hello-proxy" in message
    assert "delete or rename" in message
    assert f"kubectl annotate configmap hello-proxy -n demo {ADOPT_ANNOTATION}=true" in message
    assert ("Warning", "NameConflict") in [(t.type, t.reason) for t in outcome.transitions]
    # And so on every later pass: no write, no further event.
    kube.writes.clear()
    again = reconcile(kube, scaledapi(status=outcome.status), now=lambda: NOW)
    assert kube.writes == []
    assert again.transitions == []
    assert kube.objects[("ConfigMap", "demo", "hello-proxy")] == before


@pytest.mark.parametrize("value", ["false", "yes", ""])
def test_only_the_adopt_annotation_true_opts_in(value: str) -> None:
    kube = FakeKube()
    before = users_configmap({ADOPT_ANNOTATION: value})
    kube.objects[("ConfigMap", "demo", "hello-proxy")] = copy.deepcopy(before)
    outcome = reconcile(kube, scaledapi(), now=lambda: NOW)
    assert {(a.kind, a.name): a.action for a in outcome.applied}[("ConfigMap", "hello-proxy")] == CONFLICT
    assert kube.objects[("ConfigMap", "demo", "hello-proxy")] == before


def test_an_annotated_object_is_adopted() -> None:
    kube = FakeKube()
    kube.objects[("ConfigMap", "demo", "hello-proxy")] = users_configmap({ADOPT_ANNOTATION: "true"})
    outcome = reconcile(kube, scaledapi(), now=lambda: NOW)
    actions = {(a.kind, a.name): a.action for a in outcome.applied}
    assert actions[("ConfigMap", "hello-proxy")] == ADOPTED
    adopted = kube.objects[("ConfigMap", "demo", "hello-proxy")]
    refs = adopted["metadata"]["ownerReferences"]
    assert [(r["kind"], r["uid"], r["controller"]) for r in refs] == [("ScaledApi", "owner-uid", True)]
    assert "nginx.conf" in adopted["data"]
    assert adopted["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "scaledapi-operator"
    assert degraded_of(outcome.status)["status"] == "False"
    assert ("Normal", "Adopted") in [(t.type, t.reason) for t in outcome.transitions]
    kube.writes.clear()
    again = reconcile(kube, scaledapi(status=outcome.status), now=lambda: NOW)
    assert {a.action for a in again.applied} == {UNCHANGED}
    assert kube.writes == []


def test_adoption_keeps_other_owners_non_controller_references() -> None:
    kube = FakeKube()
    other = {"apiVersion": "v1", "kind": "ConfigMap", "name": "parent", "uid": "parent-uid"}
    kube.objects[("ConfigMap", "demo", "hello-proxy")] = users_configmap(
        {ADOPT_ANNOTATION: "true"}, ownerReferences=[other]
    )
    reconcile(kube, scaledapi(), now=lambda: NOW)
    refs = kube.objects[("ConfigMap", "demo", "hello-proxy")]["metadata"]["ownerReferences"]
    assert [r["uid"] for r in refs] == ["owner-uid", "parent-uid"]
    kube.writes.clear()
    reconcile(kube, scaledapi(), now=lambda: NOW)
    assert not [w for w in kube.writes if w[0] != "status"]  # converged, with both references


def test_the_annotation_never_takes_an_object_from_another_controller() -> None:
    kube = FakeKube()
    controller = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x", "uid": "x", "controller": True}
    before = users_configmap({ADOPT_ANNOTATION: "true"}, ownerReferences=[controller])
    kube.objects[("ConfigMap", "demo", "hello-proxy")] = copy.deepcopy(before)
    outcome = reconcile(kube, scaledapi(), now=lambda: NOW)
    assert {(a.kind, a.name): a.action for a in outcome.applied}[("ConfigMap", "hello-proxy")] == CONFLICT
    assert kube.objects[("ConfigMap", "demo", "hello-proxy")] == before
    assert "controlled by Deployment/x" in degraded_of(outcome.status)["message"]


@pytest.mark.parametrize(
    ("kind", "name", "held"),
    [
        ("ServiceAccount", "hello-proxy", {("RoleBinding", "hello-proxy"), ("Deployment", "hello-proxy")}),
        ("Role", "hello-proxy", {("RoleBinding", "hello-proxy"), ("Deployment", "hello-proxy")}),
        ("RoleBinding", "hello-proxy", {("Deployment", "hello-proxy")}),
        ("ConfigMap", "hello-proxy-status", {("Deployment", "hello-proxy")}),
    ],
)
def test_nothing_of_ours_binds_runs_as_or_writes_into_a_foreign_proxy_object(
    kind: str, name: str, held: set[tuple[str, str]]
) -> None:
    kube = FakeKube()
    before = {"apiVersion": "v1", "kind": kind, "metadata": {"name": name, "namespace": "demo"}}
    kube.objects[(kind, "demo", name)] = copy.deepcopy(before)
    outcome = reconcile(kube, scaledapi(), now=lambda: NOW)
    actions = {(a.kind, a.name): a.action for a in outcome.applied}
    assert {key for key, action in actions.items() if action == HELD} == held
    for key in held:
        assert (key[0], "demo", key[1]) not in kube.objects
    assert kube.objects[(kind, "demo", name)] == before
    # Once the user's object is gone, everything is made.
    del kube.objects[(kind, "demo", name)]
    after = reconcile(kube, scaledapi(status=outcome.status), now=lambda: NOW)
    assert {a.action for a in after.applied} <= {CREATED, UNCHANGED}
    assert degraded_of(after.status)["status"] == "False"


def test_a_pdb_that_is_not_ours_is_never_deleted() -> None:
    kube = FakeKube()
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "hello-backend", "namespace": "demo", "uid": "users-pdb"},
        "spec": {"maxUnavailable": 1},
    }
    kube.objects[("PodDisruptionBudget", "demo", "hello-backend")] = copy.deepcopy(pdb)
    outcome = reconcile(kube, scaledapi(replicas=1), now=lambda: NOW)
    assert kube.objects[("PodDisruptionBudget", "demo", "hello-backend")] == pdb
    assert degraded_of(outcome.status)["status"] == "False"  # not wanted, not ours: nothing to say


def test_endpoints_of_a_backend_service_that_is_not_ours_are_not_used() -> None:
    kube = FakeKube()
    kube.objects[("Service", "demo", "hello-backend")] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "hello-backend", "namespace": "demo", "uid": "users-svc"},
        "spec": {"type": "ClusterIP"},
    }
    kube.slices = [
        {
            "metadata": {"labels": {SERVICE_NAME_LABEL: "hello-backend"} | CONTROLLER},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.9.9.9"], "conditions": {"ready": True}}],
        }
    ]
    outcome = reconcile(kube, scaledapi(), now=lambda: NOW)
    assert "10.9.9.9" not in kube.objects[("ConfigMap", "demo", "hello-proxy")]["data"]["nginx.conf"]
    assert outcome.status["endpoints"] == []
    assert degraded_of(outcome.status)["reason"] == "NameConflict"


NODE_PORT_TAKEN = (
    'Service "hello-proxy" is invalid: spec.ports[0].nodePort: Invalid value: 30080: '
    "provided port is already allocated"
)


def test_a_refused_child_degrades_with_the_servers_message_and_the_rest_is_reconciled() -> None:
    kube = FakeKube()
    kube.refuse[("create", "Service", "hello-proxy")] = refusal(422, NODE_PORT_TAKEN)
    outcome = reconcile(kube, scaledapi(), now=lambda: NOW)
    assert [(a.kind, a.name) for a in outcome.failed] == [("Service", "hello-proxy")]
    others = {(a.kind, a.name): a.action for a in outcome.applied if a.action != FAILED}
    assert others.pop(("PodDisruptionBudget", "hello-proxy")) == UNCHANGED  # one proxy copy: none
    assert {others.pop((kind, "hello-canary")) for kind in CANARY_KINDS} == {UNCHANGED}  # no canary
    assert len(others) == 11 and set(others.values()) == {CREATED}
    assert outcome.status_written
    degraded = degraded_of(outcome.status)
    assert (degraded["status"], degraded["reason"]) == ("True", "ChildRejected")
    assert "Service/hello-proxy" in degraded["message"]
    assert "422" in degraded["message"] and "provided port is already allocated" in degraded["message"]
    warnings = [t for t in outcome.transitions if t.type == "Warning"]
    assert [t.reason for t in warnings] == ["ChildRejected"]
    # The next pass fails the same way: nothing new to write, no new event.
    kube.writes.clear()
    again = reconcile(kube, scaledapi(status=outcome.status), now=lambda: NOW)
    assert again.failed and not again.status_written
    assert again.transitions == []
    # Once the port is free, the child is made and the condition clears.
    kube.refuse.clear()
    fixed = reconcile(kube, scaledapi(status=outcome.status), now=lambda: NOW)
    assert not fixed.failed
    assert ("Service", "demo", "hello-proxy") in kube.objects
    assert degraded_of(fixed.status)["status"] == "False"
    assert ("Normal", "Recovered") in [(t.type, t.reason) for t in fixed.transitions]


def test_a_name_the_services_refuse_still_gets_a_status() -> None:
    kube = FakeKube()
    for child in ("9lives-backend", "9lives-proxy"):
        message = f'Service "{child}" is invalid: metadata.name: Invalid value: "{child}": a DNS-1035 label'
        kube.refuse[("create", "Service", child)] = refusal(422, message)
    outcome = reconcile(kube, scaledapi(name="9lives"), now=lambda: NOW)
    assert {(a.kind, a.name) for a in outcome.failed} == {
        ("Service", "9lives-backend"),
        ("Service", "9lives-proxy"),
    }
    assert ("Deployment", "demo", "9lives-backend") in kube.objects
    assert outcome.status_written
    degraded = degraded_of(outcome.status)
    assert degraded["reason"] == "ChildRejected"
    assert "Service/9lives-backend" in degraded["message"] and "DNS-1035" in degraded["message"]
    assert "(and 1 more)" in degraded["message"]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (refusal(403, 'services "hello-proxy" is forbidden: no', "Forbidden"), "ChildRejected"),
        (refusal(409, "Operation cannot be fulfilled", "Conflict"), "ChildRejected"),
        (refusal(500, 'failed calling webhook "x"', "InternalError"), "ChildApplyFailed"),
    ],
)
def test_refusals_and_failures_of_a_patch(error: ApiError, reason: str) -> None:
    kube = FakeKube()
    first = reconcile(kube, scaledapi(), now=lambda: NOW)
    kube.objects[("Service", "demo", "hello-proxy")]["spec"]["type"] = "ClusterIP"  # drift
    kube.refuse[("patch", "Service", "hello-proxy")] = error
    outcome = reconcile(kube, scaledapi(status=first.status), now=lambda: NOW)
    assert [(a.kind, a.name, a.reason) for a in outcome.failed] == [("Service", "hello-proxy", reason)]
    degraded = degraded_of(outcome.status)
    assert (degraded["status"], degraded["reason"]) == ("True", reason)
    assert str(error.status) in degraded["message"] and "Service/hello-proxy" in degraded["message"]
    assert outcome.status_written


def test_a_refused_delete_of_the_pdb_degrades() -> None:
    kube = FakeKube()
    first = reconcile(kube, scaledapi(replicas=2), now=lambda: NOW)
    kube.refuse[("delete", "PodDisruptionBudget", "hello-backend")] = refusal(403, "forbidden", "Forbidden")
    outcome = reconcile(kube, scaledapi(replicas=1, status=first.status), now=lambda: NOW)
    assert ("PodDisruptionBudget", "demo", "hello-backend") in kube.objects
    degraded = degraded_of(outcome.status)
    assert degraded["reason"] == "ChildRejected"
    assert "PodDisruptionBudget/hello-backend was not deleted: 403" in degraded["message"]
    assert kube.objects[("Deployment", "demo", "hello-backend")]["spec"]["replicas"] == 1


def test_a_409_that_persists_is_a_refusal() -> None:
    class Vanishing(FakeKube):
        def create(self, body: dict[str, Any]) -> dict[str, Any] | None:
            if body["metadata"]["name"] == "hello-proxy-status":
                return None  # 409 every time, yet never readable
            return super().create(body)

    kube = Vanishing()
    outcome = reconcile(kube, scaledapi(), now=lambda: NOW)
    assert [(a.kind, a.name, a.reason) for a in outcome.failed] == [
        ("ConfigMap", "hello-proxy-status", "ChildRejected")
    ]
    assert "409" in degraded_of(outcome.status)["message"]


def test_ready_endpoints_reach_the_nginx_config() -> None:
    kube = FakeKube()
    kube.slices = [
        {
            "metadata": {"labels": {SERVICE_NAME_LABEL: "hello-backend"} | CONTROLLER},
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
    kube.pods = [proxy_pod("p-1")]  # a live pod's report is kept
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


def proxy_pod(name: str, phase: str = "Running") -> dict[str, Any]:
    labels = {
        "app.kubernetes.io/name": "scaledapi",
        "app.kubernetes.io/instance": "hello",
        "app.kubernetes.io/component": "proxy",
    }
    return {"metadata": {"name": name, "labels": labels}, "status": {"phase": phase}}


def test_reports_of_gone_proxy_pods_are_removed() -> None:
    kube = FakeKube()
    first = reconcile(kube, scaledapi(), now=lambda: NOW)
    key = ("ConfigMap", "demo", "hello-proxy-status")
    kube.objects[key]["data"] = {"live": "{}", "gone": "{}", "finished": "{}"}
    kube.pods = [proxy_pod("live"), proxy_pod("finished", phase="Succeeded")]
    reconcile(kube, scaledapi(status=first.status), now=lambda: NOW)
    assert kube.objects[key]["data"] == {"live": "{}"}


def test_a_report_written_meanwhile_is_kept_on_conflict() -> None:
    """409 on the removal (the ConfigMap changed since it was read): nothing removed, no failure."""
    kube = FakeKube()
    first = reconcile(kube, scaledapi(), now=lambda: NOW)
    key = ("ConfigMap", "demo", "hello-proxy-status")
    kube.objects[key]["data"] = {"gone": "{}"}
    kube.refuse[("patch", "ConfigMap", "hello-proxy-status")] = refusal(
        409, "object was modified", "Conflict"
    )
    outcome = reconcile(kube, scaledapi(status=first.status), now=lambda: NOW)
    assert kube.objects[key]["data"] == {"gone": "{}"}
    assert outcome.failed == []


def test_fields_added_by_hand_are_removed_and_server_defaults_kept() -> None:
    """A nodeSelector on the pod template, a field on a container and externalIPs on a Service are
    drift; what the API server fills in (dnsPolicy, imagePullPolicy, clusterIP) is not."""
    kube = FakeKube()
    first = reconcile(kube, scaledapi(), now=lambda: NOW)
    deployment = kube.objects[("Deployment", "demo", "hello-backend")]
    pod = deployment["spec"]["template"]["spec"]
    pod.update(dnsPolicy="ClusterFirst", nodeSelector={"disk": "ssd"})
    pod["containers"][0].update(imagePullPolicy="IfNotPresent", stdin=True)
    deployment["spec"]["template"]["metadata"]["annotations"] = {"kubectl.kubernetes.io/restartedAt": "x"}
    service = kube.objects[("Service", "demo", "hello-backend")]
    service["spec"]["externalIPs"] = ["203.0.113.9"]
    kube.writes.clear()
    outcome = reconcile(kube, scaledapi(status=first.status), now=lambda: NOW)
    actions = {(a.kind, a.name): a for a in outcome.applied}
    assert actions[("Deployment", "hello-backend")].action == PATCHED
    assert ".spec.template.spec.nodeSelector (added)" in actions[("Deployment", "hello-backend")].detail
    assert actions[("Service", "hello-backend")].action == PATCHED
    pod = kube.objects[("Deployment", "demo", "hello-backend")]["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod
    assert pod["dnsPolicy"] == "ClusterFirst"
    assert "stdin" not in pod["containers"][0]  # the containers list replaced as a whole
    template = kube.objects[("Deployment", "demo", "hello-backend")]["spec"]["template"]
    assert template["metadata"]["annotations"] == {"kubectl.kubernetes.io/restartedAt": "x"}
    assert "externalIPs" not in kube.objects[("Service", "demo", "hello-backend")]["spec"]
    assert kube.objects[("Service", "demo", "hello-backend")]["spec"]["clusterIP"] == "10.96.0.10"
    kube.writes.clear()
    reconcile(kube, scaledapi(status=outcome.status), now=lambda: NOW)
    assert [w for w in kube.writes if w[0] == "patch"] == []


def test_deprecated_greeting_warns_once_per_generation_and_still_sets_the_env() -> None:
    kube = FakeKube()
    body = scaledapi()
    body["spec"]["backend"]["greeting"] = "Hi"
    first = reconcile(kube, body, now=lambda: NOW)
    warnings = [t for t in first.transitions if t.reason == "DeprecatedField"]
    assert len(warnings) == 1 and "spec.backend.env" in warnings[0].message
    env = kube.objects[("Deployment", "demo", "hello-backend")]["spec"]["template"]["spec"]["containers"][0][
        "env"
    ]
    assert {"name": "GREETING", "value": "Hi"} in env
    body["status"] = first.status
    again = reconcile(kube, body, now=lambda: NOW)
    assert [t for t in again.transitions if t.reason == "DeprecatedField"] == []
