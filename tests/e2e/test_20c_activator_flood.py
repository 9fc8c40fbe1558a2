"""Scenario 20c: a flood of large POSTs at 0 copies does not take the nginx pod down.

With spec.scaleToZero at the most the CRD's memory budget allows for 1 MiB bodies (60 held), 500
concurrent POSTs of 1 MiB each go to a sleeping ScaledApi through the host port. The nginx pod is not
restarted (same pod, restartCount unchanged, no OOMKilled); the held requests are answered by the backend
once it is awake (POST /api/echo says it got the whole body); every other one gets 503 with Retry-After
at once, from nginx. Then, asleep again, a body over maxHeldBodyBytes gets 413 at once and still wakes
the backend.
"""

from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.e2e import figures, kube, traffic
from tests.e2e import scaledapi as sapi

# Run alone, never beside other scenarios (hack/e2e.sh): 500 MiB of POSTs through the host port load the
# whole cluster, and the refusals are timed.
pytestmark = pytest.mark.serial

SCENARIO = "20c activator flood"
IDLE = 5
CLIENTS = 500
BODY_BYTES = 1024 * 1024  # 1 MiB: the most maxHeldBodyBytes allows (nginx's own limit while awake)
# The most the CRD allows with 1 MiB bodies: maxHeldRequests x (maxHeldBodyBytes + 64 KiB) <= 64 MiB.
HELD = 60
REQUEST_TIMEOUT_S = 120.0  # a held request waits for the backend's wake-up (wakeTimeoutSeconds 60)
OVER_THE_CAP = f"{HELD} requests are held already while the backend wakes up"
# A refusal comes at once: within this even with 500 MiB of bodies on the way through the host port.
REFUSAL_MEDIAN_MAX_S = 5.0
REFUSAL_MAX_S = 20.0


def flood_manifest(ns: str) -> kube.JSON:
    obj = sapi.manifest(ns, replicas=1)
    obj["spec"]["scaleToZero"] = {
        "idleSeconds": IDLE,
        "wakeTimeoutSeconds": 60,
        "maxHeldRequests": HELD,
        "maxHeldBodyBytes": BODY_BYTES,
    }
    return obj


@dataclass(frozen=True)
class Answer:
    sent: float
    received: float
    status: int | None
    retry_after: str | None
    body: dict[str, Any] | None
    error: str | None

    @property
    def seconds(self) -> float:
        return self.received - self.sent


def post(body: bytes, timeout: float = REQUEST_TIMEOUT_S) -> Answer:
    """One POST /api/echo through the host port on a new connection."""
    sent = time.monotonic()
    try:
        response = requests.post(
            traffic.url(path="/api/echo"), data=body, timeout=timeout, headers={"Connection": "close"}
        )
    except requests.RequestException as exc:
        return Answer(sent, time.monotonic(), None, None, None, f"{type(exc).__name__}: {exc}")
    received = time.monotonic()
    try:
        parsed = response.json()
    except ValueError:
        parsed = None
    return Answer(
        sent,
        received,
        response.status_code,
        response.headers.get("Retry-After"),
        parsed if isinstance(parsed, dict) else {"text": response.text[:200]},
        None,
    )


def wait_asleep(ns: str, name: str, timeout: float = IDLE + 60.0) -> None:
    """Until the ScaledApi says scaledToZero, no backend pod is left and nginx runs the asleep config."""

    def asleep() -> bool:
        status = (sapi.get(ns, name) or {}).get("status") or {}
        return status.get("scaledToZero") is True and not kube.pods(ns, name)

    kube.wait_for(
        asleep, timeout, 0.5, what=f"{ns}/{name} at 0 copies", describe=lambda: sapi.describe(ns, name)
    )
    sapi.wait_config_applied(ns, name)


@dataclass(frozen=True)
class ProxyPod:
    name: str
    uid: str
    restarts: int
    oom_killed: bool
    ready: bool


def proxy_pods(ns: str, name: str) -> list[ProxyPod]:
    found = []
    for pod in kube.list_json("pods", ns, kube.selector(name, "proxy")):
        state = kube.pod_state(pod)
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        oom = any(
            ((s.get("lastState") or {}).get("terminated") or {}).get("reason") == "OOMKilled"
            or ((s.get("state") or {}).get("terminated") or {}).get("reason") == "OOMKilled"
            for s in statuses
        )
        found.append(ProxyPod(state.name, state.uid, state.restarts, oom, state.ready))
    return sorted(found, key=lambda p: p.name)


def cgroup_memory(ns: str, pod: str) -> dict[str, Any]:
    """The nginx container's memory figures from its cgroup (v2), where the image and kernel have them."""
    found: dict[str, Any] = {}
    for file, key in (
        ("memory.peak", "peak_mib"),
        ("memory.current", "current_mib"),
        ("memory.max", "max_mib"),
    ):
        result = kube.kubectl(
            "exec", pod, "-n", ns, "-c", "nginx", "--", "cat", f"/sys/fs/cgroup/{file}", check=False
        )
        text = result.stdout.strip()
        if result.returncode == 0 and text.isdigit():
            found[key] = round(int(text) / 1024 / 1024, 1)
    result = kube.kubectl(
        "exec", pod, "-n", ns, "-c", "nginx", "--", "cat", "/sys/fs/cgroup/memory.events", check=False
    )
    if result.returncode == 0:
        events = dict(line.split() for line in result.stdout.splitlines() if len(line.split()) == 2)
        found["oom_kill_events"] = int(events.get("oom_kill", "0"))
    return found


def test_a_flood_of_large_posts_at_zero_copies_is_held_up_to_the_cap_and_refused_past_it(
    namespace: str, name: str
) -> None:
    kube.apply(flood_manifest(namespace))
    sapi.wait_serving(namespace, name, 1)
    body = b"x" * BODY_BYTES
    awake = post(body, timeout=30.0)
    assert awake.status == 200 and (awake.body or {}).get("bytes") == BODY_BYTES, (
        f"POST /api/echo of 1 MiB while awake: {awake} (is the backend image older than its echo route?)"
    )
    before = proxy_pods(namespace, name)
    assert before and all(p.ready for p in before), before

    wait_asleep(namespace, name)
    barrier = threading.Barrier(CLIENTS)

    def one(_: int) -> Answer:
        barrier.wait(60.0)  # all at once: the threads are started before the first request goes
        return post(body)

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        started = time.monotonic()
        answers = list(pool.map(one, range(CLIENTS)))
    wall = time.monotonic() - started

    failed = [a for a in answers if a.status is None]
    answered = [a for a in answers if a.status == 200]
    refused = [a for a in answers if a.status == 503]
    other = [a for a in answers if a.status not in (None, 200, 503)]
    after = proxy_pods(namespace, name)
    memory = cgroup_memory(namespace, after[0].name) if after else {}
    refusal_s = [a.seconds for a in refused]
    figures.record(
        SCENARIO,
        "flood",
        {
            "clients": CLIENTS,
            "body_bytes": BODY_BYTES,
            "max_held_requests": HELD,
            "answered_2xx": len(answered),
            "refused_503": len(refused),
            "other_status": sorted({a.status for a in other if a.status is not None}),
            "no_answer": len(failed),
            "refused_latency": figures.stats(refusal_s, with_values=False),
            "answered_latency": figures.stats([a.seconds for a in answered], with_values=False),
            "wall_s": round(wall, 2),
            "proxy_restarts": {"before": [p.restarts for p in before], "after": [p.restarts for p in after]},
            "proxy_memory": memory,
        },
    )

    # The nginx pod lived through it: the same pod, not restarted, never OOM-killed.
    assert [(p.name, p.uid) for p in after] == [(p.name, p.uid) for p in before], (before, after)
    assert [p.restarts for p in after] == [p.restarts for p in before], (before, after)
    assert not any(p.oom_killed for p in after), after
    assert memory.get("oom_kill_events", 0) == 0, memory
    # Every request had an answer: 200 from the backend or a refusal, nothing else.
    assert not failed, [a.error for a in failed[:5]]
    assert not other, [(a.status, a.body) for a in other[:5]]
    # The held ones (at least the cap's worth came while asleep) got the backend's answer to the whole body.
    assert len(answered) >= HELD, f"only {len(answered)} answered, the cap is {HELD}"
    wrong = [a.body for a in answered if (a.body or {}).get("bytes") != BODY_BYTES]
    assert not wrong, wrong[:5]
    # The rest were refused at once by nginx, with Retry-After, and not held.
    assert refused, "no request was refused: the cap did not hold"
    assert {a.retry_after for a in refused} == {"1"}, {a.retry_after for a in refused}
    reasons = {str((a.body or {}).get("reason")) for a in refused}
    assert reasons == {OVER_THE_CAP}, reasons
    assert statistics.median(refusal_s) <= REFUSAL_MEDIAN_MAX_S, figures.stats(refusal_s, with_values=False)
    assert max(refusal_s) <= REFUSAL_MAX_S, figures.stats(refusal_s, with_values=False)

    # Asleep again: a body over the limit gets 413 at once, and still wakes the backend.
    wait_asleep(namespace, name)
    too_large = post(b"x" * (BODY_BYTES + 1), timeout=30.0)
    woke = kube.wait_for(
        lambda: kube.pods(namespace, name) or None,
        60.0,
        0.5,
        what="a backend pod after the refused request",
        describe=lambda: sapi.describe(namespace, name),
    )
    figures.record(
        SCENARIO,
        "too large",
        {
            "status": too_large.status,
            "latency_s": round(too_large.seconds, 3),
            "woke": [p.name for p in woke],
        },
    )
    assert too_large.status == 413, too_large
    assert (too_large.body or {}).get("error") == "payload too large", too_large.body
    assert too_large.seconds <= REFUSAL_MEDIAN_MAX_S, too_large
