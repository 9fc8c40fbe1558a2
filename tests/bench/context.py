"""The options of a bench run and what its sections share."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from tests.bench.cluster import Namespaces


@dataclass(frozen=True)
class Options:
    rounds: int = 3  # A/B rounds of every alternating section
    duration_s: float = 10.0  # each hey run
    warmup_s: float = 5.0  # hey on each path before the measured rounds
    concurrency: int = 16  # hey -c
    probe_rate: float = 200.0  # requests/s of the host-side probe while scaling (through node ports)
    probe_workers: int = 8
    churn_cycles: int = 3  # operator: create and delete 7 ScaledApis this many times
    settle_s: float = 30.0  # operator: sampling before and after the churn
    objects: int = 1000  # operator_scale: ScaledApis created while the operator is stopped
    patch_objects: int = 100  # operator_scale: objects of the spec-change phase
    patch_rate: float = 2.0  # operator_scale: spec changes per second during the churn
    churn_seconds: float = 600.0  # operator_scale: how long the spec churn lasts
    converge_timeout_s: float = 900.0  # operator_scale: the most we wait for every object

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Context:
    options: Options
    node: str  # where hey runs (a kind node container)
    namespaces: Namespaces = field(default_factory=Namespaces)
    # Results one section leaves for another (scale -> ready_to_served).
    shared: dict[str, Any] = field(default_factory=dict)
