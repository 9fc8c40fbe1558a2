"""The operator's metrics (scaledapi_operator.metrics): what reconciles, child writes, drift, status and
the retry queue become, read back from the module's registry. The API is the in-memory fake of
test_reconcile; the handlers run as kopf calls them."""

from __future__ import annotations

import socket
from typing import Any

import kopf
import pytest
import requests

from scaledapi_operator import handlers, metrics
from scaledapi_operator.reconcile import reconcile
from scaledapi_operator.retry import RetryQueue
from tests.unit.test_reconcile import FakeKube, refusal, scaledapi

KEY = ("demo", "hello")


def value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def memo(monkeypatch: pytest.MonkeyPatch) -> kopf.Memo:
    monkeypatch.setattr(handlers, "kopf_post", lambda body, transition: None)
    kube = FakeKube()
    kube.scaledapis[KEY] = scaledapi()
    memo = kopf.Memo()
    memo.kube = kube
    memo.retries = RetryQueue()
    memo.background = set()
    return memo


on_create: Any = handlers.on_create
on_update: Any = handlers.on_update


def test_a_reconcile_counts_its_trigger_result_duration_and_writes(memo: kopf.Memo) -> None:
    ok, created = (
        value("scaledapi_operator_reconciles_total", trigger="create", result="ok"),
        value("scaledapi_operator_child_writes_total", kind="Deployment", action="created"),
    )
    timed = value("scaledapi_operator_reconcile_duration_seconds_count", trigger="create")
    configs = value("scaledapi_operator_proxy_config_writes_total", namespace="demo", scaledapi="hello")
    on_create(name="hello", namespace="demo", memo=memo)
    assert value("scaledapi_operator_reconciles_total", trigger="create", result="ok") == ok + 1
    assert value("scaledapi_operator_reconcile_duration_seconds_count", trigger="create") == timed + 1
    # NAME-backend and NAME-proxy
    assert value("scaledapi_operator_child_writes_total", kind="Deployment", action="created") == created + 2
    assert (
        value("scaledapi_operator_proxy_config_writes_total", namespace="demo", scaledapi="hello")
        == configs + 1
    )
    assert value("scaledapi_desired_replicas", namespace="demo", scaledapi="hello") == 2
    assert value("scaledapi_ready_replicas", namespace="demo", scaledapi="hello") == 0  # no pod is ready
    assert value("scaledapi_condition", namespace="demo", scaledapi="hello", type="Ready") == 0
    assert value("scaledapi_condition", namespace="demo", scaledapi="hello", type="Progressing") == 1


def test_a_refused_child_counts_as_refused_and_failed_and_the_retry_queue_grows(memo: kopf.Memo) -> None:
    refused = value("scaledapi_operator_reconciles_total", trigger="create", result="refused")
    failed = value("scaledapi_operator_child_writes_total", kind="Service", action="failed")
    memo.kube.refuse[("create", "Service", "hello-proxy")] = refusal(422, "nodePort already allocated")
    on_create(name="hello", namespace="demo", memo=memo)
    assert value("scaledapi_operator_reconciles_total", trigger="create", result="refused") == refused + 1
    assert value("scaledapi_operator_child_writes_total", kind="Service", action="failed") == failed + 1
    assert value("scaledapi_operator_retrying") == 1
    memo.kube.refuse.clear()
    handlers.resync_all(memo.kube, memo.retries)
    assert value("scaledapi_operator_retrying") == 0
    assert value("scaledapi_operator_reconciles_total", trigger="leader", result="ok") >= 1


def test_a_pass_that_raises_counts_as_error(memo: kopf.Memo) -> None:
    errors = value("scaledapi_operator_reconciles_total", trigger="update", result="error")
    memo.kube.refuse[("get", "ScaledApi", "hello")] = TimeoutError("timed out")
    on_update(name="hello", namespace="demo", memo=memo)
    assert value("scaledapi_operator_reconciles_total", trigger="update", result="error") == errors + 1


def test_drift_is_counted_but_a_spec_change_and_new_endpoints_are_not() -> None:
    kube = FakeKube()
    first = reconcile(kube, scaledapi())
    drift = value("scaledapi_operator_drift_corrections_total", kind="Deployment")
    # Someone scales the backend Deployment by hand: patched back, with the spec unchanged.
    kube.objects[("Deployment", "demo", "hello-backend")]["spec"]["replicas"] = 7
    kube.caught_up_watch()
    second = reconcile(kube, scaledapi(status=first.status))
    assert value("scaledapi_operator_drift_corrections_total", kind="Deployment") == drift + 1
    # The user changes spec.replicas (a new generation): a patch, not a drift correction.
    changed = scaledapi(replicas=3, status=second.status)
    changed["metadata"]["generation"] = 2
    kube.caught_up_watch()
    reconcile(kube, changed)
    assert value("scaledapi_operator_drift_corrections_total", kind="Deployment") == drift + 1


def test_a_deleted_scaledapi_loses_its_series(memo: kopf.Memo) -> None:
    on_create(name="hello", namespace="demo", memo=memo)
    assert metrics.REGISTRY.get_sample_value(
        "scaledapi_desired_replicas", {"namespace": "demo", "scaledapi": "hello"}
    )
    del memo.kube.scaledapis[KEY]
    on_update(name="hello", namespace="demo", memo=memo)
    assert value("scaledapi_operator_reconciles_total", trigger="update", result="gone") >= 1
    labels = {"namespace": "demo", "scaledapi": "hello"}
    assert metrics.REGISTRY.get_sample_value("scaledapi_desired_replicas", labels) is None
    assert metrics.REGISTRY.get_sample_value("scaledapi_condition", {**labels, "type": "Ready"}) is None


def test_leadership_gauge() -> None:
    metrics.leading(True)
    assert value("scaledapi_operator_leader") == 1
    metrics.leading(False)
    assert value("scaledapi_operator_leader") == 0


@pytest.mark.parametrize(("text", "port"), [("", 9102), ("9200", 9200), ("0", None)])
def test_the_port_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, text: str, port: int | None
) -> None:
    monkeypatch.setenv("SCALEDAPI_METRICS_PORT", text)
    assert metrics.port_from_environment() == port


def test_a_bad_port_is_an_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALEDAPI_METRICS_PORT", "http")
    with pytest.raises(ValueError, match="SCALEDAPI_METRICS_PORT must be a port number"):
        metrics.port_from_environment()


def test_served_over_http_in_the_text_format() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    metrics.serve(port)
    metrics.leading(True)
    response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert response.status_code == 200
    assert "# TYPE scaledapi_operator_reconciles_total counter" in response.text
    assert "scaledapi_operator_leader 1.0" in response.text
