"""seen.ChildVersions, and reconcile_by_name dropping the events that only echo an earlier pass."""

from __future__ import annotations

from typing import Any

import pytest

from scaledapi_operator.builders.common import BACKEND, selector_labels
from scaledapi_operator.reconcile import COALESCED, EXPLAINED, LOCKS, Outcome, owner_of, reconcile_by_name
from scaledapi_operator.seen import RESUMED, SEEN, ChildEvent, ChildVersions, Trigger, child_event
from scaledapi_operator.status import Transition
from tests.unit.test_reconcile import FakeKube, scaledapi

KEY = ("demo", "hello")


def pod(name: str, version: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": version}}


class CountingKube(FakeKube):
    """Counts the reads of the ScaledApi: every pass starts with one."""

    def __init__(self) -> None:
        super().__init__()
        self.passes = 0

    def get_scaledapi(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.passes += 1
        return super().get_scaledapi(namespace, name)


def no_post(body: Any, transition: Transition) -> None:
    return None


def reconciled_kube() -> CountingKube:
    kube = CountingKube()
    kube.scaledapis[KEY] = scaledapi()
    assert isinstance(reconcile_by_name(kube, *KEY, no_post), Outcome)
    kube.passes = 0
    return kube


def echo(kube: FakeKube, kind: str, name: str) -> ChildEvent:
    obj = kube.objects[(kind, "demo", name)]
    return ChildEvent(kind, name, obj["metadata"]["resourceVersion"])


# --- the record -----------------------------------------------------------------------------------------


def test_a_child_event_names_its_version_and_a_deletion_always_reconciles() -> None:
    body = {"kind": "Deployment", "metadata": {"name": "hello-backend", "resourceVersion": "42"}}
    assert child_event(body, None) == ChildEvent("Deployment", "hello-backend", "42")
    assert child_event(body, "MODIFIED") == ChildEvent("Deployment", "hello-backend", "42")
    assert child_event(body, "DELETED") is None
    assert child_event({"kind": "Deployment", "metadata": {"name": "x"}}, None) is None


def test_only_the_recorded_version_is_explained() -> None:
    seen = ChildVersions()
    seen.saw(KEY, [{"kind": "Service", "metadata": {"name": "hello-proxy", "resourceVersion": "7"}}, None])
    assert seen.explains(KEY, ChildEvent("Service", "hello-proxy", "7"))
    assert not seen.explains(KEY, ChildEvent("Service", "hello-proxy", "8"))
    assert not seen.explains(("other", "hello"), ChildEvent("Service", "hello-proxy", "7"))
    assert not seen.explains(KEY, None)


def test_a_complete_list_replaces_the_kinds_entries_so_churning_pods_do_not_grow_it() -> None:
    seen = ChildVersions()
    seen.saw(KEY, [{"kind": "Service", "metadata": {"name": "hello-proxy", "resourceVersion": "7"}}])
    for generation in range(100):
        seen.saw_all(KEY, "Pod", [pod(f"hello-backend-{generation}-{i}", "1") for i in range(3)])
    assert seen.size() == 1 + 3
    assert seen.explains(KEY, ChildEvent("Pod", "hello-backend-99-0", "1"))
    assert not seen.explains(KEY, ChildEvent("Pod", "hello-backend-98-0", "1"))
    assert seen.explains(KEY, ChildEvent("Service", "hello-proxy", "7"))


def test_a_resume_is_explained_once_a_pass_finished_and_forget_drops_all() -> None:
    seen = ChildVersions()
    seen.saw_all(KEY, "Pod", [pod("p", "1")])
    assert not seen.explains(KEY, RESUMED)
    seen.finished(KEY)
    assert seen.explains(KEY, RESUMED)
    seen.forget(KEY)
    assert not seen.explains(KEY, RESUMED)
    assert seen.size() == 0


# --- reconcile_by_name ------------------------------------------------------------------------------------


def test_the_echo_of_every_child_of_a_pass_needs_no_other_pass() -> None:
    kube = reconciled_kube()
    writes = list(kube.writes)
    for kind, _, name in list(kube.objects):
        assert reconcile_by_name(kube, *KEY, no_post, echo(kube, kind, name)) is EXPLAINED
    assert reconcile_by_name(kube, *KEY, no_post, RESUMED) is EXPLAINED
    assert kube.passes == 0
    assert kube.writes == writes


def test_a_change_made_after_the_pass_reconciles_and_is_undone() -> None:
    kube = reconciled_kube()
    deployment = kube.objects[("Deployment", "demo", "hello-backend")]
    deployment["spec"]["replicas"] = 7
    deployment["metadata"]["resourceVersion"] = "by-hand"
    outcome = reconcile_by_name(kube, *KEY, no_post, echo(kube, "Deployment", "hello-backend"))
    assert isinstance(outcome, Outcome)
    assert kube.objects[("Deployment", "demo", "hello-backend")]["spec"]["replicas"] == 2
    # Its own patch's echo is explained in turn.
    after = echo(kube, "Deployment", "hello-backend")
    assert reconcile_by_name(kube, *KEY, no_post, after) is EXPLAINED


def test_a_pod_listed_by_the_pass_is_explained_and_a_new_one_is_not() -> None:
    kube = CountingKube()
    kube.scaledapis[KEY] = scaledapi()
    labels = selector_labels(owner_of(kube.scaledapis[KEY]), BACKEND)
    kube.pods = [{"metadata": {"name": "hello-backend-a", "resourceVersion": "5", "labels": labels}}]
    reconcile_by_name(kube, *KEY, no_post)
    assert SEEN.explains(KEY, ChildEvent("Pod", "hello-backend-a", "5"))
    assert not SEEN.explains(KEY, ChildEvent("Pod", "hello-backend-a", "6"))
    assert not SEEN.explains(KEY, ChildEvent("Pod", "hello-backend-b", "1"))


def test_create_update_and_resync_always_reconcile() -> None:
    kube = reconciled_kube()
    assert isinstance(reconcile_by_name(kube, *KEY, no_post), Outcome)
    assert kube.passes == 1


class MidPassKube(CountingKube):
    """A request for the same ScaledApi arrives while its first pass runs (from within the pass, as
    another handler thread would): it must return at once, noted for the running pass."""

    def __init__(self, arriving: Trigger) -> None:
        super().__init__()
        self.arriving = arriving
        self.during: list[Any] = []

    def get_scaledapi(self, namespace: str, name: str) -> dict[str, Any] | None:
        found = super().get_scaledapi(namespace, name)
        if not self.during:
            self.during.append(reconcile_by_name(self, namespace, name, no_post, self.arriving))
        return found


def test_a_request_during_a_pass_holds_no_thread_and_brings_one_more_pass() -> None:
    kube = MidPassKube(ChildEvent("Deployment", "hello-backend", "changed-during-the-pass"))
    kube.scaledapis[KEY] = scaledapi()
    assert isinstance(reconcile_by_name(kube, *KEY, no_post), Outcome)
    assert kube.during == [COALESCED]
    assert kube.passes == 2  # that version was never seen: one more pass, which reads afresh
    assert not LOCKS.running(*KEY)


def test_a_request_during_a_pass_that_the_pass_explains_brings_none() -> None:
    kube = MidPassKube(RESUMED)  # explained once the running pass finishes
    kube.scaledapis[KEY] = scaledapi()
    assert isinstance(reconcile_by_name(kube, *KEY, no_post), Outcome)
    assert kube.during == [COALESCED]
    assert kube.passes == 1
    assert not LOCKS.running(*KEY)


def test_a_pass_that_raises_lets_the_next_request_start_one() -> None:
    kube = CountingKube()
    kube.scaledapis[KEY] = scaledapi()
    kube.refuse[("get", "ScaledApi", "hello")] = TimeoutError("the API server did not answer")
    with pytest.raises(TimeoutError):
        reconcile_by_name(kube, *KEY, no_post)
    assert not LOCKS.running(*KEY)
    kube.refuse.clear()
    assert isinstance(reconcile_by_name(kube, *KEY, no_post), Outcome)
