"""metrics_overhead: requests/s at saturation through nginx with its metrics on and off, same run.

Two ScaledApis of 2 backend replicas each, alike but for ``spec.proxy.metrics`` (true: each request
also sends nginx's log line as a datagram to the reloader, which counts it; false: neither). ``hey -c
16 -z DURATION`` runs inside a kind node against each nginx Service, alternated on/off/on/off after a
warm-up of each. The figure is the median rate of 200 answers, and its ratio on/off.
"""

from __future__ import annotations

from tests.bench import cluster
from tests.bench.context import Context
from tests.bench.report import RATIO, Figure, Goal, SectionResult, median
from tests.bench.throughput import alternate
from tests.e2e import kube

NAMES = {"on": "mx-on", "off": "mx-off"}
RATIO_GOAL = Goal(">=", 0.9)


def run(ctx: Context, result: SectionResult) -> None:
    ns = ctx.namespaces.create("metrics")
    try:
        for side, name in NAMES.items():
            obj = cluster.scaledapi(ns, name, 2)
            obj["spec"]["proxy"]["metrics"] = side == "on"
            kube.apply(obj)
        cluster.wait_scaledapis_ready(ns, list(NAMES.values()))
        paths = {side: cluster.cluster_ip_url(ns, f"{name}-proxy") for side, name in NAMES.items()}
        result.samples["urls"] = paths
        runs = alternate(ctx, paths, result, "metrics")
        result.figures += [
            Figure(
                result.name,
                "requests/s (200s) through nginx, metrics on vs off, median",
                median(r.ok_per_second for r in runs["on"]),
                median(r.ok_per_second for r in runs["off"]),
                unit="req/s",
                goal=RATIO_GOAL,
                goal_on=RATIO,
            ),
            Figure(
                result.name,
                "failed requests (non-200 or no answer), all rounds",
                float(sum(r.failures for r in runs["on"])),
                float(sum(r.failures for r in runs["off"])),
                unit="",
                goal=Goal("<=", 0),
            ),
        ]
    finally:
        ctx.namespaces.delete(ns)
