"""cache.ChildCache, and passes that compare with the watched bodies instead of reading every child."""

from __future__ import annotations

import copy
from typing import Any

import kopf

from scaledapi_operator.cache import CHILDREN, ChildCache
from scaledapi_operator.reconcile import CONFLICT, Outcome, reconcile_by_name
from scaledapi_operator.retry import RetryQueue
from scaledapi_operator.status import Transition
from tests.unit.test_reconcile import FakeKube, scaledapi
from tests.unit.test_retry import on_child_event

KEY = ("demo", "hello")
BACKEND = ("Deployment", "demo", "hello-backend")


def deployment(replicas: int = 2) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {
            "name": "hello-backend",
            "namespace": "demo",
            "resourceVersion": "5",
            "managedFields": [{"manager": "kube-controller-manager", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"replicas": replicas},
    }


class ReadCountingKube(FakeKube):
    """Counts the reads of children by name; its watch delivers nothing unless a test says so."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[str, str]] = []

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads.append((kind, name))
        return super().get(kind, namespace, name)

    def caught_up_watch(self) -> None:
        return None  # only what the test delivers, or what the operator itself wrote


def no_post(body: Any, transition: Transition) -> None:
    return None


def test_a_body_is_kept_without_managed_fields_and_each_get_is_a_copy() -> None:
    cache = ChildCache()
    cache.put(deployment())
    found = cache.get(*BACKEND)
    assert found is not None
    assert "managedFields" not in found["metadata"]
    assert found["spec"] == {"replicas": 2}
    found["spec"]["replicas"] = 9
    assert cache.get(*BACKEND) == {**deployment(), "metadata": found["metadata"]}


def test_pods_and_slices_are_not_cached_and_a_deletion_drops_the_body() -> None:
    cache = ChildCache()
    cache.put({"kind": "Pod", "metadata": {"name": "p", "namespace": "demo"}})
    cache.put({"kind": "EndpointSlice", "metadata": {"name": "s", "namespace": "demo"}})
    assert cache.size_bytes() == 0
    cache.on_event(deployment(), None)
    assert cache.get(*BACKEND) is not None
    cache.on_event(deployment(), "DELETED")
    assert cache.get(*BACKEND) is None


def test_a_pass_after_the_first_reads_no_child_of_ours_by_name() -> None:
    kube = ReadCountingKube()
    kube.scaledapis[KEY] = scaledapi()
    assert isinstance(reconcile_by_name(kube, *KEY, no_post), Outcome)
    assert kube.reads == []  # nothing cached yet: each child was created at once, none read first
    assert len([w for w in kube.writes if w[0] == "create"]) >= 10
    writes = list(kube.writes)
    outcome = reconcile_by_name(kube, *KEY, no_post)  # the cache holds what the first pass wrote
    assert isinstance(outcome, Outcome)
    assert kube.reads == []
    assert kube.writes == writes


def test_a_child_that_exists_but_is_not_cached_yet_is_read_after_the_create_conflicts() -> None:
    """After a restart the watches may not have listed a child yet: the create answers 409, then it is
    read and compared like any other (here: unchanged, so not written)."""
    kube = ReadCountingKube()
    kube.scaledapis[KEY] = scaledapi()
    reconcile_by_name(kube, *KEY, no_post)
    CHILDREN.clear()  # a new operator process
    kube.writes.clear()
    outcome = reconcile_by_name(kube, *KEY, no_post)
    assert isinstance(outcome, Outcome)
    assert ("Deployment", "hello-backend") in kube.reads
    assert kube.writes == []


def test_a_users_object_of_a_childs_name_is_never_cached_so_always_read() -> None:
    kube = ReadCountingKube()
    kube.scaledapis[KEY] = scaledapi()
    users = {"kind": "ConfigMap", "metadata": {"name": "hello-proxy-status", "namespace": "demo"}}
    kube.objects[("ConfigMap", "demo", "hello-proxy-status")] = copy.deepcopy(users)
    for _ in range(2):
        outcome = reconcile_by_name(kube, *KEY, no_post)
        assert isinstance(outcome, Outcome)
        actions = {(a.kind, a.name): a.action for a in outcome.applied}
        assert actions[("ConfigMap", "hello-proxy-status")] == CONFLICT
        assert ("ConfigMap", "hello-proxy-status") in kube.reads
        kube.reads.clear()
    assert CHILDREN.get("ConfigMap", "demo", "hello-proxy-status") is None


def test_a_child_event_updates_the_cache_before_its_pass_which_undoes_the_drift() -> None:
    kube = ReadCountingKube()
    kube.scaledapis[KEY] = scaledapi()
    reconcile_by_name(kube, *KEY, no_post)
    edited = kube.objects[BACKEND]
    edited["spec"]["replicas"] = 7  # by hand
    edited["metadata"]["resourceVersion"] = "by-hand"
    memo = kopf.Memo()
    memo.kube = kube
    memo.retries = RetryQueue()
    memo.background = set()
    kube.reads.clear()
    on_child_event(body=copy.deepcopy(edited), namespace="demo", memo=memo, type="MODIFIED")
    assert kube.objects[BACKEND]["spec"]["replicas"] == 2
    assert ("Deployment", "hello-backend") not in kube.reads  # compared with the event's body


def test_a_deleted_child_is_created_again_from_its_deleted_event() -> None:
    kube = ReadCountingKube()
    kube.scaledapis[KEY] = scaledapi()
    reconcile_by_name(kube, *KEY, no_post)
    gone = kube.objects.pop(BACKEND)
    memo = kopf.Memo()
    memo.kube = kube
    memo.retries = RetryQueue()
    memo.background = set()
    on_child_event(body=copy.deepcopy(gone), namespace="demo", memo=memo, type="DELETED")
    assert BACKEND in kube.objects
