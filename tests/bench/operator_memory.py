"""operator: the operator pods' memory (working set) and CPU, sampled from crictl in the node every 2 s,
before, during and after churn: 7 ScaledApis (1 backend copy each, small) created until Ready and then
deleted (their namespace gone), ``churn_cycles`` times.

Figures use, per phase, each pod's median and then the larger of the two pods (the leader does the
work, the standby watches the same objects). Growth across the churn is the memory after the last
cycle against the memory after the first: the first cycle warms caches, a leak keeps growing after it.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from tests.bench import cluster
from tests.bench.context import Context
from tests.bench.report import Figure, Goal, SectionResult, median

COUNT = 7
MEMORY_GOAL = Goal("<=", 60.0)
GROWTH_GOAL = Goal("<=", 5.0)


def phase_memory(samples: Iterable[Mapping[str, Any]]) -> float | None:
    """The larger of the pods' median working set (MB) over these samples."""
    per_pod: dict[str, list[float]] = defaultdict(list)
    for s in samples:
        per_pod[str(s["pod"])].append(float(s["working_set_mb"]))
    medians = [m for m in (median(v) for v in per_pod.values()) if m is not None]
    return max(medians) if medians else None


def leader_cpu(samples: Iterable[Mapping[str, Any]]) -> float | None:
    """Median CPU (millicores) of the leading pod over these samples."""
    return median(float(s["cpu_m"]) for s in samples if s["leader"] and s["cpu_m"] is not None)


def growth_percent(first: float | None, last: float | None) -> float | None:
    if first is None or last is None or first == 0:
        return None
    return (last - first) / first * 100


def _window(seconds: float) -> None:
    """A measuring window: the sampler runs meanwhile (a time span to observe, not a wait for a state)."""
    threading.Event().wait(seconds)


def run(ctx: Context, result: SectionResult) -> None:
    opts = ctx.options
    cycles: list[dict[str, Any]] = []
    result.samples["cycles"] = cycles
    with cluster.OperatorSampler(interval=2.0) as sampler:
        try:
            sampler.set_phase("before")
            _window(opts.settle_s)
            for c in range(1, opts.churn_cycles + 1):
                sampler.set_phase(f"churn{c}")
                ns = ctx.namespaces.create(f"churn{c}")
                objects = [cluster.scaledapi(ns, f"churn{i}", 1) for i in range(COUNT)]
                t0 = time.monotonic()
                cluster.apply_all(objects)
                cluster.wait_scaledapis_ready(ns, [o["metadata"]["name"] for o in objects])
                ready_s = time.monotonic() - t0
                ctx.namespaces.delete(ns)
                gone_s = time.monotonic() - t0 - ready_s
                after = sampler.sample()
                cycles.append(
                    {
                        "cycle": c,
                        "all_ready_s": round(ready_s, 2),
                        "deleted_s": round(gone_s, 2),
                        "after": after,
                    }
                )
                memory = ", ".join(f"{s['pod']}={s['working_set_mb']} MB" for s in after)
                print(
                    f"  operator churn {c}: Ready after {ready_s:.1f} s, gone after {gone_s:.1f} s; {memory}"
                )
            sampler.set_phase("after")
            _window(opts.settle_s)
        finally:
            sampler.stop()
            samples = sampler.snapshot()
            result.samples["operator"] = samples
            result.samples["sampler_errors"] = sampler.errors[:20]
            result.figures += figures(result.name, samples, cycles)


def figures(section: str, samples: list[dict[str, Any]], cycles: list[dict[str, Any]]) -> list[Figure]:
    before = phase_memory(s for s in samples if s["phase"] == "before")
    after = phase_memory(s for s in samples if s["phase"] == "after")
    first = phase_memory(cycles[0]["after"]) if cycles else None
    last = phase_memory(cycles[-1]["after"]) if cycles else None
    churn = [s for s in samples if str(s["phase"]).startswith("churn")]
    return [
        Figure(section, "operator memory (working set) before churn", before, unit="MB"),
        Figure(
            section,
            f"operator memory after {len(cycles)} churn cycles of {COUNT} ScaledApis",
            after,
            unit="MB",
            goal=MEMORY_GOAL,
        ),
        Figure(
            section,
            f"operator memory growth, after churn cycle 1 -> after cycle {len(cycles)}",
            growth_percent(first, last),
            unit="%",
            goal=GROWTH_GOAL,
        ),
        Figure(
            section, "operator memory growth, before -> after churn", growth_percent(before, after), unit="%"
        ),
        Figure(
            section,
            "leader CPU before churn, median",
            leader_cpu(s for s in samples if s["phase"] == "before"),
            unit="mCPU",
        ),
        Figure(section, "leader CPU during churn, median", leader_cpu(churn), unit="mCPU"),
    ]
