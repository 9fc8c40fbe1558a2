"""Scale to zero, the operator's side (pure): when the backend sleeps, and what it runs while it does.

Each nginx pod says in its report whether it has seen no API request for spec.scaleToZero.idleSeconds
(scaledapi_proxy.zero). The backend sleeps while every reporting nginx pod is idle: its Deployments
(and the canary's) go to 0 copies, and nginx gets the config that holds requests. spec.replicas is
never changed, so `kubectl scale` and an HPA keep setting what the backend wakes up to. The first
request that comes makes its nginx pod report "not idle"; the next pass gives the Deployments their
copies back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from scaledapi_operator.spec import ScaledApiSpec
from scaledapi_operator.status import parse_reports


def is_asleep(spec: ScaledApiSpec, reports_configmap: Mapping[str, Any] | None) -> bool:
    """Scale to zero is on, there is something to sleep, and every nginx pod that reports is idle."""
    if spec.scale_to_zero is None or spec.replicas == 0:
        return False
    return all_idle(reports_configmap)


def all_idle(reports_configmap: Mapping[str, Any] | None) -> bool:
    """There is a report, and every nginx pod's says idle (wake.py wakes the backend on the first not)."""
    reports = parse_reports((reports_configmap or {}).get("data") or {})
    return bool(reports) and all(report.get("idle") is True for report in reports.values())


def running_spec(spec: ScaledApiSpec, asleep: bool) -> ScaledApiSpec:
    """The spec the children are built from: spec.replicas (and the canary's) at 0 while asleep."""
    if not asleep:
        return spec
    canary = spec.canary and dataclasses.replace(spec.canary, replicas=0)
    return dataclasses.replace(spec, replicas=0, canary=canary)
