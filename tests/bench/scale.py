"""scale: ``kubectl scale scaledapi/NAME --replicas=10`` from 2 until every new copy has answered through
nginx, vs a bare Deployment of the same pods scaled 2 -> 10 until all are Ready. Alternated, scaled back
to 2 (and the stopped pods gone) between runs.

Both sides run the same probe from the host (``probe_workers`` sequential clients, ``probe_rate``
requests/s in all): through nginx on node port 30081 for the ScaledApi, through a NodePort Service of
the bare Deployment on 30082 for the plain side, so that both scale under the same load. A pod watch
timestamps each Ready on the client. The same runs give ready_to_served its samples: for the plain side
that is kube-proxy's path (Ready -> first answer through the Service), for comparison.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from tests.bench import cluster
from tests.bench.context import Context
from tests.bench.report import RATIO, Figure, Goal, SectionResult, median
from tests.e2e import kube, traffic
from tests.e2e import scaledapi as sapi

NAME = "scale"
PLAIN = "plain"
FROM, TO = 2, 10
NODE_PORT, PLAIN_NODE_PORT = 30081, 30082
RATIO_GOAL = Goal("<=", 1.05)
ROUND_TIMEOUT_S = 300.0
# The plain side's "first answer through the Service" is informational: waited for at most this long.
PLAIN_SERVED_TIMEOUT_S = 30.0


def setup_scaledapi(ctx: Context) -> str:
    ns = ctx.namespaces.create("scale")
    kube.apply(cluster.scaledapi(ns, NAME, FROM, node_port=NODE_PORT))
    sapi.wait_serving(ns, NAME, FROM, port=sapi.HOST_PORTS[NODE_PORT], timeout=300.0)
    return ns


def setup_plain(ctx: Context) -> str:
    """The ScaledApi's backend Deployment, rendered by the operator's builders, as a bare Deployment, and
    a NodePort Service for the probe."""
    ns = ctx.namespaces.create("scale-plain")
    obj = cluster.scaledapi(ns, PLAIN, FROM)
    service = next(
        c
        for c in cluster.plain_children(obj)
        if c["kind"] == "Service" and c["metadata"]["name"] == f"{PLAIN}-backend"
    )
    service["spec"]["type"] = "NodePort"
    service["spec"]["ports"][0]["nodePort"] = PLAIN_NODE_PORT
    cluster.apply_all([cluster.plain_backend(obj), service])
    sapi.wait_serving(ns, PLAIN, FROM, port=sapi.HOST_PORTS[PLAIN_NODE_PORT], timeout=300.0)
    return ns


def _probe(ctx: Context, node_port: int) -> traffic.Load:
    return traffic.Load(
        port=sapi.HOST_PORTS[node_port],
        rate=ctx.options.probe_rate,
        workers=ctx.options.probe_workers,
        max_seconds=900,
        max_requests=1_000_000,
    )


def _round_sample(
    t0: float, new: list[str], ready: dict[str, float], answered: dict[str, float], probe: traffic.Load
) -> dict[str, Any]:
    return {
        "new_pods": new,
        "ready_after_s": {p: round(ready[p] - t0, 4) for p in new},
        "answered_after_s": {p: round(answered[p] - t0, 4) for p in new if p in answered},
        "ready_to_served_s": {p: round(answered[p] - ready[p], 4) for p in new if p in answered},
        "all_ready_s": round(max(ready[p] for p in new) - t0, 4),
        "all_answered_s": round(max(answered[p] for p in new) - t0, 4)
        if all(p in answered for p in new)
        else None,
        "probe": probe.summary(),
        "probe_failures": [a.error for a in probe.failures()][:20],
    }


def scaledapi_round(ctx: Context, ns: str) -> dict[str, Any]:
    before = {p.name for p in kube.active_pods(ns, NAME)}
    with (
        sapi.PodWatcher(ns, kube.backend_selector(NAME)) as watcher,
        _probe(ctx, NODE_PORT) as probe,
    ):
        t0 = time.monotonic()
        sapi.scale(ns, NAME, TO)

        def every_new_copy_answered() -> list[str] | None:
            active = kube.active_pods(ns, NAME)
            new = [p.name for p in active if p.name not in before]
            answered, ready = probe.first_answers(), watcher.first_ready()
            if len(active) == TO and len(new) == TO - FROM and all(p in answered and p in ready for p in new):
                return new
            return None

        new = kube.wait_for(
            every_new_copy_answered,
            ROUND_TIMEOUT_S,
            0.5,
            what=f"every new copy of {ns}/{NAME} to answer through nginx",
            describe=lambda: f"{sapi.describe(ns, NAME)}; answered: {sorted(probe.first_answers())}",
        )
        sample = _round_sample(t0, new, watcher.first_ready(), probe.first_answers(), probe)
    sapi.scale(ns, NAME, FROM)
    sapi.wait_serving(ns, NAME, FROM, port=sapi.HOST_PORTS[NODE_PORT], no_terminating=True, timeout=300.0)
    return sample


def plain_round(ctx: Context, ns: str) -> dict[str, Any]:
    before = {p.name for p in kube.active_pods(ns, PLAIN)}
    deployment = f"deployment/{PLAIN}-backend"
    with (
        sapi.PodWatcher(ns, kube.backend_selector(PLAIN)) as watcher,
        _probe(ctx, PLAIN_NODE_PORT) as probe,
    ):
        t0 = time.monotonic()
        kube.kubectl("scale", deployment, f"--replicas={TO}", "-n", ns)

        def all_ready() -> list[str] | None:
            active = kube.active_pods(ns, PLAIN)
            new = [p.name for p in active if p.name not in before]
            ready = watcher.first_ready()
            if len(active) == TO and len(new) == TO - FROM and all(p in ready for p in new):
                return new
            return None

        new = kube.wait_for(
            all_ready,
            ROUND_TIMEOUT_S,
            0.5,
            what=f"all {TO} pods of {ns}/{deployment} to be Ready",
            describe=lambda: kube.describe_pods(ns, PLAIN),
        )
        with contextlib.suppress(AssertionError):  # informational: kube-proxy's Ready -> first answer
            kube.wait_for(
                lambda: all(p in probe.first_answers() for p in new),
                PLAIN_SERVED_TIMEOUT_S,
                0.5,
                what="every new pod to answer through the Service",
            )
        sample = _round_sample(t0, new, watcher.first_ready(), probe.first_answers(), probe)
    kube.kubectl("scale", deployment, f"--replicas={FROM}", "-n", ns)
    kube.wait_for(
        lambda: len(kube.pods(ns, PLAIN)) == FROM and all(p.ready for p in kube.pods(ns, PLAIN)),
        300.0,
        0.5,
        what=f"{ns}/{deployment} back to {FROM} pods, the others gone",
        describe=lambda: kube.describe_pods(ns, PLAIN),
    )
    return sample


def run(ctx: Context, result: SectionResult) -> None:
    ns = setup_scaledapi(ctx)
    plain_ns = setup_plain(ctx)
    rounds: dict[str, list[dict[str, Any]]] = {"scaledapi": [], "plain": []}
    result.samples["rounds"] = rounds
    ctx.shared["scale_rounds"] = rounds
    try:
        for round_no in range(ctx.options.rounds):
            a = scaledapi_round(ctx, ns)
            rounds["scaledapi"].append(a)
            b = plain_round(ctx, plain_ns)
            rounds["plain"].append(b)
            print(
                f"  scale round {round_no + 1}: ScaledApi every new copy answered after "
                f"{a['all_answered_s']:.2f} s (all Ready after {a['all_ready_s']:.2f} s); "
                f"Deployment all Ready after {b['all_ready_s']:.2f} s"
            )
    finally:
        result.figures += figures(result.name, rounds)
        ctx.namespaces.delete(ns, plain_ns)


def figures(section: str, rounds: dict[str, list[dict[str, Any]]]) -> list[Figure]:
    a, b = rounds["scaledapi"], rounds["plain"]
    if not a or not b:
        return []
    return [
        Figure(
            section,
            f"kubectl scale {FROM} -> {TO}: every new copy answers via nginx vs Deployment all Ready, median",
            median(r["all_answered_s"] for r in a),
            median(r["all_ready_s"] for r in b),
            goal=RATIO_GOAL,
            goal_on=RATIO,
        ),
        Figure(
            section,
            f"kubectl scale {FROM} -> {TO}: all new pods Ready, median",
            median(r["all_ready_s"] for r in a),
            median(r["all_ready_s"] for r in b),
        ),
        Figure(
            section,
            "probe requests failed while scaling, all rounds",
            float(sum(r["probe"]["failed"] for r in a)),
            float(sum(r["probe"]["failed"] for r in b)),
            unit="",
            goal=Goal("<=", 0),
        ),
    ]
