"""ready_to_served: for each new pod of the scale step, from the pod Ready (a client-side pod watch, not
the condition's 1-second lastTransitionTime) to its first answer through nginx; p50 and p95.

It uses the runs of the scale section when that ran; otherwise it runs the ScaledApi side of it alone.
The plain column is kube-proxy's figure for the same pods shape: Ready -> first answer through the
bare Deployment's Service (from the scale section's plain runs).
"""

from __future__ import annotations

from typing import Any

from tests.bench import scale
from tests.bench.context import Context
from tests.bench.report import Figure, Goal, SectionResult, percentile

P95_GOAL = Goal("<=", 0.25)


def _values(rounds: list[dict[str, Any]]) -> list[float]:
    return [float(v) for r in rounds for v in r["ready_to_served_s"].values()]


def run(ctx: Context, result: SectionResult) -> None:
    rounds = ctx.shared.get("scale_rounds")
    if not rounds or not rounds.get("scaledapi"):
        rounds = {"scaledapi": [], "plain": []}
        result.notes.append("scale did not run: its ScaledApi side was run alone")
        ns = scale.setup_scaledapi(ctx)
        try:
            for _ in range(ctx.options.rounds):
                rounds["scaledapi"].append(scale.scaledapi_round(ctx, ns))
        finally:
            ctx.namespaces.delete(ns)
    ours, theirs = _values(rounds["scaledapi"]), _values(rounds["plain"])
    result.samples["ready_to_served_s"] = {"scaledapi": ours, "plain": theirs}
    result.samples["pods"] = len(ours)
    result.figures += [
        Figure(
            result.name,
            f"pod Ready -> first answer (nginx vs Service), p50 of {len(ours)} pods",
            percentile(ours, 50),
            percentile(theirs, 50),
        ),
        Figure(
            result.name,
            f"pod Ready -> first answer (nginx vs Service), p95 of {len(ours)} pods",
            percentile(ours, 95),
            percentile(theirs, 95),
            goal=P95_GOAL,
        ),
    ]
