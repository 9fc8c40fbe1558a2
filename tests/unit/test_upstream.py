"""The EndpointSlice fast path against the in-memory API of test_reconcile: it writes NAME-proxy in
one list and one patch once a full reconcile left its plan, writes nothing when the text is the same,
and gives up its plan (leaving the decision to the full reconcile) when NAME-proxy is not the one the
reconcile found, is gone, or is not ours."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import kopf
import pytest

from scaledapi_operator import handlers
from scaledapi_operator.reconcile import reconcile, reconcile_by_name
from scaledapi_operator.retry import RetryQueue
from scaledapi_operator.upstream import UPSTREAMS, sync_upstream
from tests.unit.test_reconcile import (
    CONTROLLER,
    NOW,
    FakeKube,
    refusal,
    scaledapi,
    users_configmap,
)

KEY = ("demo", "hello")
CONFIG = ("ConfigMap", "demo", "hello-proxy")


@pytest.fixture(autouse=True)
def no_plans() -> Iterator[None]:
    UPSTREAMS.forget(KEY)
    yield
    UPSTREAMS.forget(KEY)


def ready_slice(*addresses: str) -> dict[str, Any]:
    return {
        "addressType": "IPv4",
        "metadata": {"labels": {"kubernetes.io/service-name": "hello-backend"} | CONTROLLER},
        "endpoints": [
            {"addresses": [a], "conditions": {"ready": True}, "targetRef": {"uid": a}} for a in addresses
        ],
    }


class CountingKube(FakeKube):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[str] = []

    def list_objects(
        self, kind: str, namespace: str | None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        self.requests.append(f"list {kind}")
        return super().list_objects(kind, namespace, label_selector)

    def get_scaledapi(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.requests.append(f"get ScaledApi/{name}")
        return super().get_scaledapi(namespace, name)

    def patch(
        self, kind: str, namespace: str, name: str, patch: dict[str, Any], content_type: str = ""
    ) -> dict[str, Any] | None:
        self.requests.append(f"patch {kind}/{name}")
        if kind == "ConfigMap" and "uid" in patch.get("metadata", {}):
            actual = self.objects.get((kind, namespace, name))
            if actual is not None and actual["metadata"]["uid"] != patch["metadata"]["uid"]:
                raise refusal(422, "metadata.uid: field is immutable")
        return super().patch(kind, namespace, name, patch, content_type)


def reconciled(kube: CountingKube, *addresses: str) -> None:
    kube.slices = [ready_slice(*addresses)]
    reconcile(kube, scaledapi(), now=lambda: NOW)
    kube.requests.clear()
    kube.writes.clear()


def test_a_slice_not_written_by_the_endpointslice_controller_is_ignored_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kube = CountingKube()
    reconciled(kube, "10.244.0.5")
    forged = ready_slice("10.66.0.1")
    forged["metadata"] |= {"name": "hello-backend-forged", "uid": "forged-uid"}
    forged["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] = "someone"
    kube.slices.append(forged)
    with caplog.at_level("WARNING", logger="scaledapi_operator.upstream"):
        for _ in range(3):
            assert not sync_upstream(kube, *KEY).written
    assert "10.66.0.1" not in kube.objects[CONFIG]["data"]["nginx.conf"]
    logged = [r.getMessage() for r in caplog.records if "hello-backend-forged" in r.getMessage()]
    assert len(logged) == 1, logged
    assert "not written by the EndpointSlice controller" in logged[0]


def test_without_a_reconcile_first_it_writes_nothing() -> None:
    kube = CountingKube()
    kube.slices = [ready_slice("10.244.0.5")]
    outcome = sync_upstream(kube, *KEY)
    assert not outcome.written and outcome.skipped == "no plan"
    assert kube.requests == []


def test_a_new_ready_pod_takes_one_list_and_one_patch() -> None:
    kube = CountingKube()
    reconciled(kube, "10.244.0.5")
    kube.slices = [ready_slice("10.244.0.5", "10.244.0.7")]
    outcome = sync_upstream(kube, *KEY)
    assert outcome.written
    assert kube.requests == ["list EndpointSlice", "patch ConfigMap/hello-proxy"]
    cm = kube.objects[CONFIG]
    assert "10.244.0.7:5252" in cm["data"]["nginx.conf"]
    # The same config as the full reconcile would write: it then finds nothing to change.
    kube.writes.clear()
    reconcile(kube, scaledapi(), now=lambda: NOW)
    assert ("patch", "ConfigMap", "hello-proxy") not in kube.writes
    assert outcome.owner is not None and outcome.owner.uid == "owner-uid"


def test_the_same_endpoints_write_nothing() -> None:
    kube = CountingKube()
    reconciled(kube, "10.244.0.5")
    outcome = sync_upstream(kube, *KEY)
    assert not outcome.written and outcome.skipped == ""
    assert kube.requests == ["list EndpointSlice"]


def test_a_configmap_made_again_by_someone_else_is_not_overwritten() -> None:
    kube = CountingKube()
    reconciled(kube, "10.244.0.5")
    kube.objects[CONFIG] = users_configmap(name="hello-proxy", uid="someone-elses")
    kube.slices = [ready_slice("10.244.0.5", "10.244.0.7")]
    outcome = sync_upstream(kube, *KEY)
    assert not outcome.written and "immutable" in outcome.skipped
    assert "nginx.conf" not in kube.objects[CONFIG].get("data", {})
    assert UPSTREAMS.plan(KEY) is None  # from now on only the full reconcile decides
    assert sync_upstream(kube, *KEY).skipped == "no plan"


def test_a_deleted_configmap_drops_the_plan() -> None:
    kube = CountingKube()
    reconciled(kube, "10.244.0.5")
    del kube.objects[CONFIG]
    kube.slices = [ready_slice("10.244.0.7")]
    outcome = sync_upstream(kube, *KEY)
    assert not outcome.written and outcome.skipped == "ConfigMap gone"
    assert UPSTREAMS.plan(KEY) is None


def test_no_plan_while_the_proxy_configmap_is_not_ours() -> None:
    kube = CountingKube()
    kube.objects[CONFIG] = users_configmap(name="hello-proxy")
    reconciled(kube, "10.244.0.5")
    assert UPSTREAMS.plan(KEY) is None


def test_no_plan_while_the_backend_service_is_not_ours() -> None:
    """Then NAME-backend's slices are not our pods: the fast path must not put them in the upstream."""
    kube = CountingKube()
    service = users_configmap(name="hello-backend")
    service["kind"] = "Service"
    kube.objects[("Service", "demo", "hello-backend")] = service
    reconciled(kube, "10.244.0.5")
    assert UPSTREAMS.plan(KEY) is None


def test_a_deleted_scaledapi_forgets_its_plan() -> None:
    kube = CountingKube()
    kube.scaledapis[KEY] = scaledapi()
    kube.slices = [ready_slice("10.244.0.5")]
    reconcile_by_name(kube, *KEY, post=lambda _body, _transition: None)
    assert UPSTREAMS.plan(KEY) is not None
    del kube.scaledapis[KEY]
    reconcile_by_name(kube, *KEY, post=lambda _body, _transition: None)
    assert UPSTREAMS.plan(KEY) is None


def slice_event_body(service: str) -> dict[str, Any]:
    labels = {
        "app.kubernetes.io/managed-by": "scaledapi-operator",
        "app.kubernetes.io/instance": "hello",
        "kubernetes.io/service-name": service,
        **CONTROLLER,
    }
    return {"metadata": {"name": f"{service}-abcde", "namespace": "demo", "labels": labels}}


def test_the_slice_handler_writes_first_and_reconciles_in_the_background() -> None:
    kube = CountingKube()
    kube.scaledapis[KEY] = scaledapi()
    reconciled(kube, "10.244.0.5")
    kube.slices = [ready_slice("10.244.0.5", "10.244.0.7")]
    memo = kopf.Memo(kube=kube, retries=RetryQueue(), background=set())

    async def deliver(service: str) -> None:
        await handlers.on_endpoint_slice_event(slice_event_body(service), "demo", memo)
        await asyncio.gather(*memo.background)

    asyncio.run(deliver("hello-backend"))
    assert kube.requests[:3] == ["list EndpointSlice", "patch ConfigMap/hello-proxy", "get ScaledApi/hello"]
    assert ("Normal", "ProxyConfigUpdated", "nginx upstream now has 2 ready endpoints") in kube.events
    assert kube.writes.count(("patch", "ConfigMap", "hello-proxy")) == 1  # the reconcile found it right
    assert ("status", "ScaledApi", "hello") in kube.writes  # the status shows the new endpoint
    status = kube.scaledapis[KEY]["status"]
    assert status["endpoints"] == ["10.244.0.5:5252", "10.244.0.7:5252"]


def test_a_slice_of_the_nginx_service_only_reconciles() -> None:
    kube = CountingKube()
    kube.scaledapis[KEY] = scaledapi()
    reconciled(kube, "10.244.0.5")
    memo = kopf.Memo(kube=kube, retries=RetryQueue(), background=set())

    async def deliver() -> None:
        await handlers.on_endpoint_slice_event(slice_event_body("hello-proxy"), "demo", memo)
        await asyncio.gather(*memo.background)

    asyncio.run(deliver())
    assert kube.requests[0] == "get ScaledApi/hello"
