"""many: 7 ScaledApis (1 backend copy each, small resources) applied at once until all are Ready, vs
the same children as plain manifests (rendered by the operator's builders for the same spec, without
owner references) in one ``kubectl apply -f`` until all their Deployments are available. Alternated;
each run in a fresh namespace, deleted (and its pods gone) before the next.

Ready and available are timestamped by a watch on the client (kubectl --watch), not by polling.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.bench import cluster
from tests.bench.context import Context
from tests.bench.report import RATIO, Figure, Goal, SectionResult, median
from tests.e2e import kube

COUNT = 7
RATIO_GOAL = Goal("<=", 1.1)
TIMEOUT_S = 300.0


def _timed_apply(
    ns: str,
    objects: list[dict[str, Any]],
    kind: str,
    fields: tuple[str, ...],
    done: Callable[[tuple[str, ...]], bool],
    names: set[str],
) -> dict[str, Any]:
    with cluster.Watch(ns, kind, fields) as watch:
        t0 = time.monotonic()
        cluster.apply_all(objects)
        applied = time.monotonic() - t0

        def all_done() -> dict[str, float] | None:
            first = watch.first(done, since=t0)
            return first if names <= set(first) else None

        first = kube.wait_for(
            all_done,
            TIMEOUT_S,
            0.2,
            what=f"every {kind} in {ns} to be done",
            describe=lambda: f"latest: {watch.latest()}",
        )
    return {
        "applied_s": round(applied, 3),
        "done_after_s": {n: round(first[n] - t0, 3) for n in sorted(names)},
        "all_done_s": round(max(first[n] for n in names) - t0, 3),
        "watch_restarts": watch.restarts,
    }


def scaledapi_round(ctx: Context) -> dict[str, Any]:
    ns = ctx.namespaces.create("many")
    try:
        objects = [cluster.scaledapi(ns, f"many{i}", 1) for i in range(COUNT)]
        names = {o["metadata"]["name"] for o in objects}
        sample = _timed_apply(
            ns, objects, kube.PLURAL, cluster.SCALEDAPI_FIELDS, cluster.scaledapi_ready, names
        )
        cluster.wait_scaledapis_ready(ns, names, 30.0)  # what the watch saw, confirmed by a list
        return sample
    finally:
        ctx.namespaces.delete(ns)


def plain_round(ctx: Context) -> dict[str, Any]:
    ns = ctx.namespaces.create("many-plain")
    try:
        objects = [
            c for i in range(COUNT) for c in cluster.plain_children(cluster.scaledapi(ns, f"many{i}", 1))
        ]
        names = {o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"}
        sample = _timed_apply(
            ns, objects, "deployments", cluster.DEPLOYMENT_FIELDS, cluster.deployment_available, names
        )
        sample["objects"] = len(objects)
        return sample
    finally:
        ctx.namespaces.delete(ns)


def run(ctx: Context, result: SectionResult) -> None:
    rounds: dict[str, list[dict[str, Any]]] = {"scaledapi": [], "plain": []}
    result.samples["rounds"] = rounds
    try:
        for round_no in range(ctx.options.rounds):
            a = scaledapi_round(ctx)
            rounds["scaledapi"].append(a)
            b = plain_round(ctx)
            rounds["plain"].append(b)
            print(
                f"  many round {round_no + 1}: {COUNT} ScaledApis Ready after {a['all_done_s']:.2f} s; "
                f"their {b['objects']} children as manifests available after {b['all_done_s']:.2f} s"
            )
    finally:
        if rounds["scaledapi"] and rounds["plain"]:
            result.figures.append(
                Figure(
                    result.name,
                    f"{COUNT} ScaledApis applied until all Ready vs plain manifests until available, median",
                    median(r["all_done_s"] for r in rounds["scaledapi"]),
                    median(r["all_done_s"] for r in rounds["plain"]),
                    goal=RATIO_GOAL,
                    goal_on=RATIO,
                )
            )
