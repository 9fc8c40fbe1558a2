"""Scenario 19: a canary (spec.canary) gets exactly its weight of every 100 requests.

Three stable copies and two canary copies (the backend image under a second tag). For each weight,
200 sequential requests through nginx give each pod exactly the share of weights.py's rule: the
version's percent over its pods sorted by address, the remainder to the first ones. Then, under
100 requests a second: the weight changes and a promotion (backend image := canary image, canary
removed) in one edit lose no request. Last, a canary at 100 % serves everything while the stable
Deployment has no ready pod (where ingress-nginx's canary with Argo Rollouts answers 503).
"""

from __future__ import annotations

import ipaddress
import time
from collections import Counter
from typing import Any

from scaledapi_operator.weights import effective_split, shares
from tests.e2e import figures, kube, traffic
from tests.e2e import scaledapi as sapi

SCENARIO = "19 canary"
STABLE_REPLICAS, CANARY_REPLICAS = 3, 2
WINDOWS = 2  # requests per weight: WINDOWS * 100


def canary_manifest(
    ns: str, weight: int, replicas: int = STABLE_REPLICAS, canary_replicas: int = CANARY_REPLICAS
) -> kube.JSON:
    obj = sapi.manifest(ns, replicas=replicas)
    obj["spec"]["canary"] = {"image": sapi.BACKEND_IMAGE_ALT, "weight": weight, "replicas": canary_replicas}
    return obj


def ready_pods(ns: str, name: str, component: str) -> list[kube.PodState]:
    return [p for p in kube.active_pods(ns, name, component) if p.ready]


def expected_counts(stable: list[kube.PodState], canary: list[kube.PodState], weight: int) -> dict[str, int]:
    """Requests per pod in 100, by the rule of weights.py (computed here from the pods' addresses)."""
    split = effective_split(weight, len(stable), len(canary))
    expected: dict[str, int] = {}
    for pods, percent in ((stable, split.stable), (canary, split.canary)):
        ordered = sorted(pods, key=lambda p: int(ipaddress.ip_address(p.ip)))
        expected.update({p.name: s for p, s in zip(ordered, shares(percent, len(ordered)), strict=True) if s})
    return expected


def wait_split(ns: str, name: str, weight: int, stable: int, canary: int) -> dict[str, Any]:
    """The ScaledApi observed this spec, its pods are ready, the split is `weight`, nginx has it, and
    the node port answers: on a fresh ScaledApi, CI once saw every request of a burst reset before
    kube-proxy had the new Service's rule, and once a single first connection."""

    def settled() -> dict[str, Any] | None:
        obj = sapi.get(ns, name) or {}
        status = obj.get("status") or {}
        if status.get("observedGeneration") != obj.get("metadata", {}).get("generation"):
            return None
        if status.get("weights") != {"stable": 100 - weight, "canary": weight}:
            return None
        if len(ready_pods(ns, name, "backend")) != stable or len(ready_pods(ns, name, "canary")) != canary:
            return None
        if len(kube.active_pods(ns, name, "canary")) != canary:
            return None
        conditions: list[dict[str, Any]] = status.get("conditions") or []
        ready = next((c for c in conditions if c.get("type") == "Ready"), {})
        applied = ready.get("status") == "True" and sapi.config_applied(ns, name) is not None
        return status if applied and traffic.proxy_answers() else None

    return kube.wait_for(
        settled,
        240.0,
        0.5,
        what=f"{ns}/{name} at canary weight {weight}",
        describe=lambda: sapi.describe(ns, name),
    )


def test_each_copy_gets_exactly_its_weight(namespace: str, name: str) -> None:
    results: dict[str, Any] = {}
    for weight in (0, 10, 33, 50, 100):
        kube.apply(canary_manifest(namespace, weight))
        wait_split(namespace, name, weight, STABLE_REPLICAS, CANARY_REPLICAS)
        stable, canary = ready_pods(namespace, name, "backend"), ready_pods(namespace, name, "canary")
        expected = expected_counts(stable, canary, weight)

        sequence = traffic.instances(traffic.DEFAULT_PORT, 100 * WINDOWS)

        counts = Counter(sequence)
        canary_names = {p.name for p in canary}
        canary_count = sum(n for pod, n in counts.items() if pod in canary_names)
        results[f"weight {weight}"] = {
            "requests": len(sequence),
            "canary": canary_count,
            "stable": len(sequence) - canary_count,
            "per pod": dict(sorted(counts.items())),
        }
        assert canary_count == weight * WINDOWS, results
        assert counts == {pod: share * WINDOWS for pod, share in expected.items()}, (expected, results)
        for start in range(0, 100 * (WINDOWS - 1) + 1, 10):
            assert Counter(sequence[start : start + 100]) == expected, f"weight {weight}, window at {start}"
    figures.record(SCENARIO, "counts per weight", results)


def test_weight_change_and_promotion_under_load_lose_no_request(namespace: str, name: str) -> None:
    kube.apply(canary_manifest(namespace, 10))
    wait_split(namespace, name, 10, STABLE_REPLICAS, CANARY_REPLICAS)
    timeline: list[str] = []
    with traffic.Load(rate=100, workers=8, max_seconds=400, max_requests=40_000) as load:
        kube.wait_for(lambda: load.sent >= 100, 30.0, 0.2, what="the load to start")
        for weight in (50, 90, 20):
            timeline.append(f"t+{time.monotonic() - load.started:.1f}s weight -> {weight}")
            kube.apply(canary_manifest(namespace, weight))
            wait_split(namespace, name, weight, STABLE_REPLICAS, CANARY_REPLICAS)

        timeline.append(f"t+{time.monotonic() - load.started:.1f}s promote")
        promoted = sapi.manifest(
            namespace, replicas=STABLE_REPLICAS, backend={"image": sapi.BACKEND_IMAGE_ALT}
        )
        kube.apply(promoted)  # spec.canary is gone from the applied manifest: kubectl apply removes it

        def promoted_and_serving() -> bool:
            status = (sapi.get(namespace, name) or {}).get("status") or {}
            if "weights" in status or kube.pods(namespace, name, "canary"):
                return False
            pods = kube.pods(namespace, name)
            if len(pods) != STABLE_REPLICAS or not all(
                p.ready and not p.terminating and p.images == (sapi.BACKEND_IMAGE_ALT,) for p in pods
            ):
                return False
            recent = load.last(4 * STABLE_REPLICAS)
            return {a.instance for a in recent} == {p.name for p in pods}

        kube.wait_for(
            promoted_and_serving,
            300.0,
            0.5,
            what="the promotion to finish",
            describe=lambda: sapi.describe(namespace, name),
        )
        timeline.append(
            f"t+{time.monotonic() - load.started:.1f}s promoted, serving from the new stable pods"
        )
    summary = load.summary()
    figures.record(SCENARIO, "weight changes and promotion", {"requests": summary, "timeline": timeline})
    failures = load.failures()
    assert not failures, f"{len(failures)} of {load.sent} failed: {load.describe_failures()}"
    assert load.sent >= 1000, summary


def test_a_full_canary_serves_while_the_stable_version_has_no_ready_pod(namespace: str, name: str) -> None:
    kube.apply(canary_manifest(namespace, 100, replicas=0))
    wait_split(namespace, name, 100, 0, CANARY_REPLICAS)
    canary = {p.name for p in ready_pods(namespace, name, "canary")}

    answers = [traffic.hello() for _ in range(100)]

    failed = [a for a in answers if a.instance is None]
    counts = Counter(a.instance for a in answers)
    figures.record(
        SCENARIO, "weight 100, stable at 0", {"requests": 100, "failed": len(failed), "per pod": dict(counts)}
    )
    assert not failed, [a.error for a in failed[:5]]
    assert set(counts) == canary and all(n == 50 for n in counts.values()), counts
