"""Weights of the nginx upstream servers when a canary runs beside the stable backend (pure).

The rule, exact per 100 requests:

* The split: the canary gets `spec.canary.weight` percent and the stable pods the rest, while both
  versions have a ready pod. A version with no ready pod gets no share and the other one all of it
  (a canary at 100 % still serves when the stable Deployment has no ready pod, and a canary that is
  not up yet does not turn its share into errors).
* Within a version, its percent is shared over its ready pods, sorted by address: each gets
  percent // pods, and the first percent % pods of them one more. So the servers' weights always sum
  to 100; nginx's smooth weighted round robin then repeats the same order every 100 picks, and any
  100 requests in a row (one nginx pod, no reload, no failed try in between) hit each pod exactly its
  weight.
* A pod whose share is 0 (a version at 0 %, or more pods than its percent) is listed as `backup`: it
  gets nothing while the weighted servers answer, and requests when all of them fail.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from scaledapi_operator.nginx_conf import Endpoint

TOTAL = 100


@dataclass(frozen=True)
class Split:
    """The percent of requests each version gets (stable + canary == 100)."""

    stable: int
    canary: int


def effective_split(weight: int, stable_ready: int, canary_ready: int) -> Split:
    """The canary's percent as the user asked, unless one version has no ready pod (module rule)."""
    if not 0 <= weight <= TOTAL:
        raise ValueError(f"canary weight must be in 0..{TOTAL}, got {weight}")
    if canary_ready == 0:
        weight = 0
    elif stable_ready == 0:
        weight = TOTAL
    return Split(stable=TOTAL - weight, canary=weight)


def shares(percent: int, count: int) -> list[int]:
    """`percent` over `count` pods: percent // count each, one more for the first percent % count."""
    if count <= 0:
        return []
    base, extra = divmod(percent, count)
    return [base + (1 if index < extra else 0) for index in range(count)]


def _weigh(endpoints: Sequence[Endpoint], percent: int) -> list[Endpoint]:
    ordered = sorted(endpoints, key=Endpoint.sort_key)
    return [
        replace(endpoint, weight=max(share, 1), backup=share == 0)
        for endpoint, share in zip(ordered, shares(percent, len(ordered)), strict=True)
    ]


def weighted(
    stable: Sequence[Endpoint], canary: Sequence[Endpoint], weight: int
) -> tuple[list[Endpoint], Split]:
    """The upstream servers of both versions with their weights, and the split they make."""
    split = effective_split(weight, len(stable), len(canary))
    return [*_weigh(stable, split.stable), *_weigh(canary, split.canary)], split
