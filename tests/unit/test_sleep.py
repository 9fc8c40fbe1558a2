"""Scale to zero: when the backend sleeps (every nginx pod reports idle), what the children become
while it does, what nginx gets, the idle report of the nginx pod and the settings in its config."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from scaledapi_operator.endpoints import SERVICE_NAME_LABEL
from scaledapi_operator.nginx_conf import Endpoint, NginxSettings, render_nginx_conf
from scaledapi_operator.sleep import is_asleep, running_spec
from scaledapi_operator.spec import parse_spec
from scaledapi_proxy.applier import APPLIED, ApplyResult
from scaledapi_proxy.sync import Syncer
from scaledapi_proxy.watch import ConfigMapState
from scaledapi_proxy.zero import ScaleToZero, servers_of, settings_of
from tests.unit.test_reconcile import CONTROLLER, FakeKube, reconcile, scaledapi

ZERO = {"idleSeconds": 30, "wakeTimeoutSeconds": 20}


def reports(*idle: bool | None) -> dict[str, Any]:
    data = {}
    for index, value in enumerate(idle):
        report: dict[str, Any] = {"hash": "h", "state": "Applied"}
        if value is not None:
            report["idle"] = value
        data[f"proxy-{index}"] = json.dumps(report)
    return {"data": data}


def spec(**extra: Any) -> Any:
    return parse_spec({"replicas": 3, "backend": {"image": "b"}, "proxy": {"image": "n"}, **extra})


def test_the_backend_sleeps_only_when_every_nginx_pod_is_idle() -> None:
    on = spec(scaleToZero=ZERO)
    assert is_asleep(on, reports(True, True))
    assert not is_asleep(on, reports(True, False))
    assert not is_asleep(on, reports(True, None))  # a pod whose config has no scale to zero yet
    assert not is_asleep(on, reports())  # no report: nobody counts requests
    assert not is_asleep(on, None)
    assert not is_asleep(spec(), reports(True))  # off by default
    assert not is_asleep(spec(replicas=0, scaleToZero=ZERO), reports(True))


def test_asleep_means_zero_copies_while_spec_replicas_stays() -> None:
    on = spec(scaleToZero=ZERO, canary={"image": "b:2", "weight": 10, "replicas": 2})
    sleeping = running_spec(on, asleep=True)
    assert (sleeping.replicas, sleeping.canary and sleeping.canary.replicas) == (0, 0)
    assert running_spec(on, asleep=False) is on
    assert on.replicas == 3


def test_the_config_carries_the_settings_and_holds_requests_only_without_servers() -> None:
    zero = ScaleToZero(idle_seconds=30, wake_timeout_seconds=20)
    asleep = render_nginx_conf(NginxSettings(scale_to_zero=zero), [])
    assert settings_of(asleep) == zero
    assert "proxy_pass http://unix:/tmp/nginx/activator.sock:;" in asleep
    assert "no ready backend" not in asleep  # held, not refused (only past the cap: test_held_limits.py)
    awake = render_nginx_conf(NginxSettings(scale_to_zero=zero), [Endpoint("10.0.0.7", 5252)])
    assert servers_of(awake) == [("10.0.0.7", 5252)]
    assert "activator.sock" not in awake
    assert "access_log syslog:server=unix:/tmp/nginx/activity.sock,nohostname scaledapi_activity;" in awake
    plain = render_nginx_conf(NginxSettings(), [Endpoint("10.0.0.7", 5252)])
    assert settings_of(plain) is None and "syslog" not in plain and "activator" not in plain
    off = render_nginx_conf(NginxSettings(scale_to_zero=zero, access_log="Off"), [Endpoint("10.0.0.7", 1)])
    assert "access_log off;" in off  # the http level's, and no stdout line in the location
    assert "/dev/stdout" not in off


def test_an_asleep_scaledapi_runs_no_copy_and_nginx_holds_requests() -> None:
    kube = FakeKube()
    body = scaledapi(replicas=2)
    body["spec"]["scaleToZero"] = ZERO
    first = reconcile(kube, body)
    assert kube.objects[("Deployment", "demo", "hello-backend")]["spec"]["replicas"] == 2
    assert first.status["scaledToZero"] is False
    status_cm = kube.objects[("ConfigMap", "demo", "hello-proxy-status")]
    status_cm["data"] = reports(True)["data"]
    body["status"] = first.status
    second = reconcile(kube, body)
    assert kube.objects[("Deployment", "demo", "hello-backend")]["spec"]["replicas"] == 0
    assert second.status["scaledToZero"] is True
    assert "activator.sock" in kube.objects[("ConfigMap", "demo", "hello-proxy")]["data"]["nginx.conf"]
    assert ("Normal", "ScaledToZero") in [(t.type, t.reason) for t in second.transitions]
    assert body["spec"]["replicas"] == 2
    status_cm["data"] = reports(False)["data"]  # a request came
    body["status"] = second.status
    third = reconcile(kube, body)
    assert kube.objects[("Deployment", "demo", "hello-backend")]["spec"]["replicas"] == 2
    assert ("Normal", "WakingUp") in [(t.type, t.reason) for t in third.transitions]


def stopping_copy_slice() -> dict[str, Any]:
    """The backend's slice while its only copies stop (put to sleep): serving, terminating, not ready."""
    conditions = {"ready": False, "serving": True, "terminating": True}
    return {
        "metadata": {"labels": {SERVICE_NAME_LABEL: "hello-backend"} | CONTROLLER},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.0.9"], "conditions": conditions}],
    }


@pytest.mark.parametrize("zero", [ZERO, None])
def test_with_scale_to_zero_stopping_copies_get_no_request_nginx_holds_them(zero: Any) -> None:
    """A wake-up while the copies put to sleep still run their preStop delay: their listener closes at
    its end, so nginx holds requests for the new copies instead (without scale to zero there is nobody
    to hold them, and a stopping copy beats none, as kube-proxy does)."""
    kube = FakeKube()
    kube.slices = [stopping_copy_slice()]
    body = scaledapi(replicas=2)
    if zero is not None:
        body["spec"]["scaleToZero"] = zero
    outcome = reconcile(kube, body)
    text = kube.objects[("ConfigMap", "demo", "hello-proxy")]["data"]["nginx.conf"]
    if zero is None:
        assert "10.244.0.9:5252" in text and "activator.sock" not in text
    else:
        assert "10.244.0.9" not in text and "activator.sock" in text
        assert outcome.status["scaledToZero"] is False  # awake: its Deployment keeps its copies
        assert kube.objects[("Deployment", "demo", "hello-backend")]["spec"]["replicas"] == 2


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("first", [True, False])
def test_the_nginx_pod_reports_each_idle_change_with_its_last_result(first: bool) -> None:
    sent: list[dict[str, Any]] = []

    class Applier:
        def apply(self, text: str) -> ApplyResult:
            return ApplyResult("h1", APPLIED, "", 1.0, 1.0, 2.0, reloaded=True)

    syncer = Syncer(
        "proxy-0",
        Applier(),
        sent.append,
        clock=Clock(),
        wall_clock=lambda: dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )
    syncer.set_idle(None)
    syncer.offer(ConfigMapState("c", "1", {"nginx.conf": "x"}), 0.0, "watch")
    syncer.step()
    assert "idle" not in json.loads(sent[-1]["data"]["proxy-0"])
    syncer.set_idle(first)
    syncer.step()
    assert json.loads(sent[-1]["data"]["proxy-0"])["idle"] is first
    count = len(sent)
    syncer.set_idle(first)  # no change: no report
    syncer.step()
    assert len(sent) == count
    syncer.set_idle(not first)
    syncer.step()
    assert json.loads(sent[-1]["data"]["proxy-0"]) == {
        "hash": "h1",
        "idle": not first,
        "message": "",
        "state": "Applied",
        "time": "2026-01-01T00:00:00Z",
    }
