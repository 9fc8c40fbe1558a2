"""Scenario 18: an autoscaling/v2 HPA on a ScaledApi scales it up under CPU load and back down after.

The load is the test's own: requests to the backend's /api/work (a few ms of CPU each) through the proxy
NodePort on loopback. metrics-server (hack/addons, deployed by hack/up.sh) gives the HPA its CPU
figures. Measured: load start to the HPA's first scale-up, the copies reached, requests sent and failed
(none may fail), and load end to the HPA back at one copy. Every copy the HPA adds must answer.
"""

from __future__ import annotations

import time

import pytest

from tests.e2e import figures, hpa, kube, traffic
from tests.e2e import scaledapi as sapi

# Run alone, never beside other scenarios (hack/e2e.sh): burns CPU to drive an HPA, and reads
# metrics-server, which a drain can take away.
pytestmark = pytest.mark.serial

SCENARIO = "18 HPA"
MAX_REPLICAS = 3
# A CPU request the load exceeds several times on one copy (utilisation = usage / request).
BACKEND_RESOURCES = {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
# ~10 requests a second of 30 ms CPU each: ~300m, 300 % of one copy's request, ~100 % of three's.
WORK = traffic.Api(path="/api/work?ms=30")
LOAD_RATE = 10.0
TARGET_UTILIZATION = 50
SCALE_DOWN_WINDOW = 15


def spec_replicas(ns: str, name: str) -> int:
    obj = sapi.get(ns, name) or {}
    return int(obj.get("spec", {}).get("replicas", 0))


def test_hpa_scales_up_under_load_and_down_after(namespace: str, name: str) -> None:
    hpa.wait_metrics_api()
    kube.apply(sapi.manifest(namespace, replicas=1, backend={"resources": BACKEND_RESOURCES}))
    sapi.wait_serving(namespace, name, 1)
    kube.apply(hpa.manifest(namespace, name, MAX_REPLICAS, TARGET_UTILIZATION, SCALE_DOWN_WINDOW))

    # Before any load the HPA must read a CPU figure for the copy; otherwise a late metric would be
    # counted as the HPA's reaction time.
    def idle_utilization() -> tuple[int] | None:
        value = hpa.cpu_utilization(namespace, name)
        return None if value is None else (value,)

    idle = kube.wait_for(
        idle_utilization,
        180.0,
        2.0,
        what="the HPA to read the backend's CPU utilisation",
        describe=lambda: hpa.describe(namespace, name),
    )
    assert spec_replicas(namespace, name) == 1, "the HPA scaled an idle ScaledApi"

    with traffic.Load(rate=LOAD_RATE, workers=4, max_seconds=480, api=WORK) as load:
        t_load = time.monotonic()
        kube.wait_for(
            lambda: spec_replicas(namespace, name) > 1,
            240.0,
            0.5,
            what="the HPA's first scale-up",
            describe=lambda: hpa.describe(namespace, name),
        )
        first_scale_up = time.monotonic() - t_load

        def every_copy_answers() -> list[kube.PodState] | None:
            # the HPA may still add copies: wait for its maximum, all Ready, each answering the load
            if spec_replicas(namespace, name) != MAX_REPLICAS:
                return None
            active = kube.active_pods(namespace, name)
            if len(active) != MAX_REPLICAS or not all(p.ready for p in active):
                return None
            answered = load.first_answers()
            return active if all(p.name in answered for p in active) else None

        copies = kube.wait_for(
            every_copy_answers,
            240.0,
            0.5,
            what=f"{MAX_REPLICAS} ready copies, each answering the load",
            describe=lambda: f"hpa {hpa.describe(namespace, name)}; {sapi.describe(namespace, name)}",
        )
        reached_at = time.monotonic() - t_load
        # round robin across all copies: a few more seconds of load, each copy in its share
        since = time.monotonic()

        def each_copy_served_five() -> bool:
            served = load.served_since(since)
            return len(served) == MAX_REPLICAS and min(served.values()) >= 5

        kube.wait_for(
            each_copy_served_five,
            60.0,
            0.5,
            what="every copy to answer at least 5 requests in turn",
            describe=lambda: str(load.served_since(since)),
        )
        turn = load.served_since(since)
    summary = load.summary()
    assert not load.failures(), f"{len(load.failures())} failed requests:\n{load.describe_failures()}"
    assert set(turn) == {p.name for p in copies}, turn

    t_stop = load.stopped
    kube.wait_for(
        lambda: spec_replicas(namespace, name) == 1,
        300.0,
        1.0,
        what="the HPA to scale back to one copy after the load",
        describe=lambda: f"hpa {hpa.describe(namespace, name)}; {sapi.describe(namespace, name)}",
    )
    scale_down = time.monotonic() - t_stop
    sapi.wait_serving(namespace, name, 1)

    figures.record(SCENARIO, "idle CPU utilisation (%)", idle[0])
    figures.record(SCENARIO, "load start to first scale-up (s)", round(first_scale_up, 1))
    figures.record(SCENARIO, "load start to every copy answering (s)", round(reached_at, 1))
    figures.record(SCENARIO, "copies reached", len(copies))
    figures.record(SCENARIO, "requests sent", summary["sent"])
    figures.record(SCENARIO, "requests failed", summary["failed"])
    figures.record(SCENARIO, "answers per copy in the last turn", dict(turn))
    figures.record(SCENARIO, "load end to one copy (s)", round(scale_down, 1))
    figures.record(SCENARIO, "load", {k: summary[k] for k in ("seconds", "rate_per_second", "per_pod")})
