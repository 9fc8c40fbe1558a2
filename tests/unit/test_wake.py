"""The wake-up's fast path (wake.py): one patch of each sleeping Deployment as the first not-idle report
arrives, only of what is ours and at 0 copies, and never over a newer decision to sleep."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from scaledapi_operator import metrics, wake
from scaledapi_operator.cache import CHILDREN
from scaledapi_operator.kube import ApiError
from tests.unit.test_reconcile import FakeKube, reconcile, scaledapi
from tests.unit.test_sleep import ZERO, reports

BACKEND = ("Deployment", "demo", "hello-backend")
CANARY = ("Deployment", "demo", "hello-canary")
STATUS_CM = ("ConfigMap", "demo", "hello-proxy-status")


@pytest.fixture(autouse=True)
def no_plans_left() -> None:
    wake.WAKES.forget(("demo", "hello"))


def asleep(canary: bool = False) -> tuple[FakeKube, dict[str, Any]]:
    """A ScaledApi put to sleep by two full passes: 0 copies, every report idle."""
    kube = FakeKube()
    body = scaledapi(replicas=3)
    body["spec"]["scaleToZero"] = ZERO
    if canary:
        body["spec"]["canary"] = {"image": "b:2", "weight": 10, "replicas": 2}
    body["status"] = reconcile(kube, body).status
    kube.objects[STATUS_CM]["data"] = reports(True)["data"]
    body["status"] = reconcile(kube, body).status
    assert body["status"]["scaledToZero"] is True
    assert kube.objects[BACKEND]["spec"]["replicas"] == 0
    return kube, body


def report(kube: FakeKube, *idle: bool) -> None:
    """A report arrives: in the API and, by its watch event, in the cache."""
    kube.objects[STATUS_CM]["data"] = reports(*idle)["data"]
    kube.caught_up_watch()


def test_a_not_idle_report_gives_the_sleeping_deployments_their_copies_in_one_patch_each() -> None:
    kube, _ = asleep(canary=True)
    report(kube, True, False)
    before = len(kube.writes)
    patched = ("scaledapi_operator_child_writes_total", {"kind": "Deployment", "action": "patched"})
    counted = metrics.REGISTRY.get_sample_value(*patched) or 0.0
    woken = wake.wake(kube, "demo", "hello")
    assert metrics.REGISTRY.get_sample_value(*patched) == counted + 2  # the operator's child writes
    assert woken.deployments == (("hello-backend", 3), ("hello-canary", 2))
    assert kube.writes[before:] == [
        ("patch", "Deployment", "hello-backend"),
        ("patch", "Deployment", "hello-canary"),
    ]
    assert kube.objects[BACKEND]["spec"]["replicas"] == 3
    assert kube.objects[CANARY]["spec"]["replicas"] == 2
    # The cache has the patched Deployments: the full pass that follows finds them right.
    assert (CHILDREN.get(*BACKEND) or {})["spec"]["replicas"] == 3


def test_idle_reports_or_a_woken_deployment_get_no_patch() -> None:
    kube, body = asleep()
    report(kube, True, True)
    before = len(kube.writes)
    assert wake.wake(kube, "demo", "hello").deployments == ()
    report(kube, False)
    assert wake.wake(kube, "demo", "hello").deployments == (("hello-backend", 3),)
    assert wake.wake(kube, "demo", "hello").deployments == ()  # already at 3: nothing more
    assert kube.writes[before:] == [("patch", "Deployment", "hello-backend")]
    # The full pass agrees: awake, at spec.replicas, and nothing to patch on the Deployment.
    outcome = reconcile(kube, body)
    assert outcome.status["scaledToZero"] is False
    assert kube.objects[BACKEND]["spec"]["replicas"] == 3


def test_without_scale_to_zero_there_is_no_plan_and_no_wake_up() -> None:
    kube = FakeKube()
    body = scaledapi(replicas=2)
    reconcile(kube, body)
    assert wake.WAKES.plan(("demo", "hello")) is None
    kube.objects[BACKEND]["spec"]["replicas"] = 0  # even a Deployment at 0 (scaled by hand)
    report(kube, False)
    assert wake.wake(kube, "demo", "hello").deployments == ()
    assert kube.objects[BACKEND]["spec"]["replicas"] == 0


def test_a_deployment_that_is_not_ours_is_never_patched() -> None:
    kube, _ = asleep()
    kube.objects[BACKEND]["metadata"]["ownerReferences"] = []  # taken over by someone else
    report(kube, False)
    before = len(kube.writes)
    assert wake.wake(kube, "demo", "hello").deployments == ()
    assert kube.writes[before:] == []


def test_a_replaced_or_deleted_deployment_is_left_to_the_full_pass() -> None:
    """The patch carries the cached uid: one made again since (another uid) answers 409, which is no
    error; a deleted one (404) neither. Any other refusal is raised for the caller to log."""
    kube, _ = asleep()
    report(kube, False)
    kube.refuse[("patch", "Deployment", "hello-backend")] = ApiError(status=409, reason="Conflict")
    assert wake.wake(kube, "demo", "hello").deployments == ()
    kube.refuse[("patch", "Deployment", "hello-backend")] = ApiError(status=500, reason="Internal")
    with pytest.raises(ApiError):
        wake.wake(kube, "demo", "hello")
    del kube.refuse[("patch", "Deployment", "hello-backend")]
    del kube.objects[BACKEND]  # gone from the API; its deletion's event has not come yet
    assert wake.wake(kube, "demo", "hello").deployments == ()


def test_a_full_pass_deciding_to_sleep_and_a_wake_up_are_never_interleaved() -> None:
    """The pass reads the reports and writes the Deployments under the wake-up's lock: a wake-up that
    comes meanwhile waits, then reads the newer report and wakes what the pass put to sleep."""
    kube, body = asleep()
    report(kube, False)
    body["status"] = reconcile(kube, body).status  # awake again: 3 copies
    assert kube.objects[BACKEND]["spec"]["replicas"] == 3
    report(kube, True)
    lock = wake.WAKES.lock(("demo", "hello"))
    results: list[wake.Woken] = []
    with lock:  # as the pass holds it while it writes 0 copies
        thread = threading.Thread(target=lambda: results.append(wake.wake(kube, "demo", "hello")))
        kube.objects[STATUS_CM]["data"] = reports(False)["data"]  # a request came: its event ...
        thread.start()
        thread.join(timeout=0.2)
        assert thread.is_alive()  # ... waits for the pass
        kube.objects[BACKEND]["spec"]["replicas"] = 0
        kube.caught_up_watch()
    thread.join(timeout=5)
    assert results == [wake.Woken((("hello-backend", 3),))]
    assert kube.objects[BACKEND]["spec"]["replicas"] == 3
