"""Scenario 20: scale to zero (spec.scaleToZero) that holds the first request instead of refusing it.

Idle for idleSeconds -> 0 copies; a burst of 200 concurrent requests at 0 copies is answered in full;
over 10 wake-ups, the first request's latency minus its pod's own create-to-Ready time (both seen by
one pod watch) is the overhead we add; 50 idle -> zero -> wake cycles with requests landing around the
idle limit lose no request to a copy removed while it served.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.e2e import figures, kube, traffic
from tests.e2e import scaledapi as sapi

# Run alone, never beside other scenarios (hack/e2e.sh): asserts timings (time to sleep, wake-up overhead)
# that a loaded cluster would stretch.
pytestmark = pytest.mark.serial

SCENARIO = "20 scale to zero"
IDLE = 5
REPLICAS = 2


def zero_manifest(ns: str) -> kube.JSON:
    obj = sapi.manifest(ns, replicas=REPLICAS)
    obj["spec"]["scaleToZero"] = {"idleSeconds": IDLE, "wakeTimeoutSeconds": 60}
    return obj


def wait_asleep(ns: str, name: str, timeout: float = IDLE + 30.0) -> float:
    """Until the ScaledApi says scaledToZero and no backend pod is left; the seconds it took."""
    started = time.monotonic()

    def asleep() -> bool:
        status = (sapi.get(ns, name) or {}).get("status") or {}
        return status.get("scaledToZero") is True and not kube.pods(ns, name)

    kube.wait_for(
        asleep, timeout, 0.2, what=f"{ns}/{name} at 0 copies", describe=lambda: sapi.describe(ns, name)
    )
    return time.monotonic() - started


def backend_generation(ns: str, name: str) -> int:
    deployment = kube.get_json("deployment", f"{name}-backend", ns) or {}
    return int(deployment.get("metadata", {}).get("generation", 0))


def test_idle_to_zero_then_a_burst_is_answered(namespace: str, name: str) -> None:
    kube.apply(zero_manifest(namespace))
    sapi.wait_serving(namespace, name, REPLICAS)
    last = traffic.hello()
    assert last.ok, last.error
    took = wait_asleep(namespace, name)
    since_last = time.monotonic() - last.received
    assert since_last <= IDLE + 10 + 1, f"0 copies only {since_last:.1f}s after the last request"
    assert (sapi.get(namespace, name) or {})["spec"]["replicas"] == REPLICAS  # the user's count stays

    with ThreadPoolExecutor(max_workers=200) as pool:
        started = time.monotonic()
        answers = list(pool.map(lambda _: traffic.hello(timeout=90.0), range(200)))
    failed = [a for a in answers if not a.ok]
    latencies = sorted(a.received - a.sent for a in answers)
    figures.record(
        SCENARIO,
        "idle and burst",
        {
            "idle_seconds": IDLE,
            "zero_copies_after_last_request_s": round(since_last, 2),
            "burst": {
                "sent": len(answers),
                "failed": len(failed),
                "served_by": sorted({a.instance or "" for a in answers}),
            },
            "burst_latency_s": {
                "min": round(latencies[0], 3),
                "median": round(statistics.median(latencies), 3),
                "max": round(latencies[-1], 3),
            },
            "burst_wall_s": round(time.monotonic() - started, 2),
            "wait_s": round(took, 2),
        },
    )
    assert not failed, [a.error for a in failed[:5]]


def test_wake_up_overhead_over_ten_wake_ups(namespace: str, name: str) -> None:
    kube.apply(zero_manifest(namespace))
    sapi.wait_serving(namespace, name, REPLICAS)
    samples: list[dict[str, Any]] = []
    for _ in range(10):
        wait_asleep(namespace, name)
        # All of its pods: the running nginx pods are listed first, which shows that the watch runs
        # before the request wakes the backend (an empty list prints nothing).
        with sapi.PodWatcher(namespace, kube.selector(name)) as watcher:
            kube.wait_for(watcher.listed.is_set, 30.0, 0.05, what="the pod watch to list the nginx pods")
            answer = traffic.hello(timeout=90.0)
            assert answer.ok, answer.error
            pod = answer.instance or ""

            def seen(pod: str = pod) -> tuple[float, float] | None:
                ready = watcher.first_ready().get(pod)
                created = next((e.at for e in watcher.events if e.name == pod), None)
                return None if ready is None or created is None else (created, ready)

            created, ready = kube.wait_for(seen, 30.0, 0.2, what=f"the watch to show {pod} Ready")
        latency = answer.received - answer.sent
        samples.append(
            {
                "latency_s": round(latency, 3),
                "pod_create_to_ready_s": round(ready - created, 3),
                "overhead_s": round(latency - (ready - created), 3),
                # Its two halves: the wake-up signal until the pod exists, and Ready until the answer.
                "sent_to_created_s": round(created - answer.sent, 3),
                "ready_to_answer_s": round(answer.received - ready, 3),
            }
        )
    # Waking is no failure: a Normal WakingUp event each time, and no NotReady warning for it.
    kube.wait_for(
        lambda: sapi.events(namespace, name)[("Normal", "WakingUp")] >= 10,
        30.0,
        0.5,
        what="10 WakingUp events",
        describe=lambda: str(sapi.events(namespace, name)),
    )
    events = sapi.events(namespace, name)
    overheads = [s["overhead_s"] for s in samples]
    median = statistics.median(overheads)
    figures.record(
        SCENARIO,
        "wake-ups",
        {
            "samples": samples,
            "median_latency_s": statistics.median(s["latency_s"] for s in samples),
            "median_pod_create_to_ready_s": statistics.median(s["pod_create_to_ready_s"] for s in samples),
            "median_overhead_s": median,
            "events": {f"{kind} {reason}": count for (kind, reason), count in sorted(events.items())},
        },
    )
    assert median <= 0.3, samples
    assert events[("Warning", "NotReady")] == 0, events


def test_fifty_cycles_around_the_idle_limit_lose_no_request(namespace: str, name: str) -> None:
    kube.apply(zero_manifest(namespace))
    sapi.wait_serving(namespace, name, REPLICAS)
    generation = backend_generation(namespace, name)
    # Gaps past the idle limit: the next request lands while the old copies are still stopping (their
    # 5 s preStop delay), the moment a request could be sent to a copy being removed.
    gaps = [IDLE + extra for extra in (1.0, 1.3, 1.6, 2.0, 3.0)]
    answers: list[traffic.Answer] = []
    for cycle in range(50):
        time.sleep(gaps[cycle % len(gaps)])  # the traffic's own pause, not a wait for a state
        for _ in range(2):
            answers.append(traffic.hello(timeout=90.0))
            time.sleep(1.0)  # 1 request a second
    failed = [a for a in answers if not a.ok]
    cycles = (backend_generation(namespace, name) - generation) // 2  # each sleep and wake-up: +2
    held = [a.received - a.sent for a in answers if a.received - a.sent > 0.5]
    figures.record(
        SCENARIO,
        "fifty cycles",
        {
            "requests": len(answers),
            "failed": len(failed),
            "sleep_wake_cycles": cycles,
            "held_requests": len(held),
            "held_median_s": round(statistics.median(held), 3) if held else None,
        },
    )
    assert not failed, [a.error for a in failed[:5]]
    assert cycles >= 45, f"only {cycles} sleep/wake cycles in 50 pauses"
