"""throughput: requests/s at saturation through nginx vs the same backend pods' ClusterIP Service.

One ScaledApi with 2 backend replicas. ``hey -c 16 -z DURATION`` runs inside a kind node against (A) the
nginx Service NAME-proxy and (B) the backend Service NAME-backend, the plain-Kubernetes path to the very
same pods, alternated A/B/A/B after a warm-up of each. The figure is the median rate of 200 answers.
"""

from __future__ import annotations

from tests.bench import cluster, hey
from tests.bench.context import Context
from tests.bench.report import RATIO, Figure, Goal, SectionResult, median
from tests.e2e import kube

NAME = "tput"
RATIO_GOAL = Goal(">=", 0.95)


def run(ctx: Context, result: SectionResult) -> None:
    ns = ctx.namespaces.create("throughput")
    try:
        kube.apply(cluster.scaledapi(ns, NAME, 2))
        cluster.wait_scaledapis_ready(ns, [NAME])
        paths = {
            "nginx": cluster.cluster_ip_url(ns, f"{NAME}-proxy"),
            "clusterip": cluster.cluster_ip_url(ns, f"{NAME}-backend"),
        }
        result.samples["urls"] = paths
        runs = alternate(ctx, paths, result, "throughput")
        result.figures += [
            Figure(
                result.name,
                "requests/s (200s), nginx vs backend ClusterIP, median",
                median(r.ok_per_second for r in runs["nginx"]),
                median(r.ok_per_second for r in runs["clusterip"]),
                unit="req/s",
                goal=RATIO_GOAL,
                goal_on=RATIO,
            ),
            Figure(
                result.name,
                "failed requests (non-200 or no answer), all rounds",
                float(sum(r.failures for r in runs["nginx"])),
                float(sum(r.failures for r in runs["clusterip"])),
                unit="",
                goal=Goal("<=", 0),
            ),
        ]
    finally:
        ctx.namespaces.delete(ns)


def alternate(
    ctx: Context, paths: dict[str, str], result: SectionResult, label: str
) -> dict[str, list[hey.HeyResult]]:
    """A warm-up of each path, then ``hey`` on each in turn, ``--rounds`` times (A/B/A/B): the runs of
    each side. Every run goes into the section's raw samples; a path with no 200 in its warm-up fails."""
    opts = ctx.options
    result.samples["hey"] = {"node": ctx.node, "concurrency": opts.concurrency, "seconds": opts.duration_s}
    warmup = {side: hey.run(ctx.node, url, opts.concurrency, opts.warmup_s) for side, url in paths.items()}
    result.samples["warmup"] = {side: r.as_dict() for side, r in warmup.items()}
    for side, r in warmup.items():
        if r.ok == 0:
            raise AssertionError(
                f"no 200 answer on the {side} path {paths[side]} during warm-up: {r.as_dict()}"
            )
    runs: dict[str, list[hey.HeyResult]] = {side: [] for side in paths}
    result.samples["rounds"] = []
    for round_no in range(opts.rounds):
        for side, url in paths.items():
            r = hey.run(ctx.node, url, opts.concurrency, opts.duration_s)
            runs[side].append(r)
            result.samples["rounds"].append({"round": round_no + 1, "side": side, **r.as_dict()})
            print(f"  {label} round {round_no + 1} {side}: {r.ok_per_second:.0f} req/s, {r.failures} failed")
    return runs
