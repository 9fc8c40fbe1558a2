"""Waking from zero in one request, without waiting for a full pass.

The first request at 0 copies makes its nginx pod report ``idle: false`` (scaledapi_proxy.zero). The
full pass that this report's event brings gives the Deployments their copies back, but it waits for a
pass that is already running (the copies put to sleep are still being removed when the next request
comes), and its first write comes after a read of the ScaledApi. ``wake`` makes one request instead, as
soon as the event arrives: it merge-patches spec.replicas of NAME-backend (and NAME-canary) to what the
last full pass would run them at awake (a ``WakePlan``), and the full pass that follows checks the rest.

One lock per ScaledApi covers, in a full pass, reading the reports until both Deployments are written,
and here the same: whichever runs later has read the later reports, so a pass that decided to sleep on
older reports never writes 0 copies over a wake-up, and a wake-up never undoes a newer decision to sleep.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from scaledapi_operator import builders, metrics
from scaledapi_operator.builders.common import proxy_status_name
from scaledapi_operator.cache import CHILDREN
from scaledapi_operator.keyed import Key, KeyedPlans
from scaledapi_operator.kube import HTTP_CONFLICT, ApiError, Kube
from scaledapi_operator.ownership import is_ours
from scaledapi_operator.sleep import all_idle

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class WakePlan:
    """What the last full pass would run awake: each Deployment's name and copies (the canary's too)."""

    owner: builders.Owner
    replicas: tuple[tuple[str, int], ...]


def plan_of(owner: builders.Owner, awake: list[dict[str, Any] | None]) -> WakePlan:
    """The plan of the Deployments built from the awake spec (None: no canary)."""
    return WakePlan(
        owner,
        tuple((d["metadata"]["name"], int(d["spec"]["replicas"])) for d in awake if d is not None),
    )


@dataclass(frozen=True)
class Woken:
    """What one wake-up patched: each Deployment brought from 0 copies to its own count."""

    deployments: tuple[tuple[str, int], ...] = ()


# One lock and one remembered WakePlan per ScaledApi.
WAKES: KeyedPlans[WakePlan] = KeyedPlans()


def under_lock(key: Key, work: Callable[[], T]) -> T:
    """Run the full pass's read of the reports and write of the Deployments under the wake-up's lock."""
    with WAKES.lock(key):
        return work()


def reports_say_awake(owner: builders.Owner) -> bool:
    """Whether the watched NAME-proxy-status, ours, has a report and one that is not idle."""
    reports = CHILDREN.get("ConfigMap", owner.namespace, proxy_status_name(owner))
    if reports is None or not is_ours(reports, owner):
        return False
    return not all_idle(reports)


def _wake_one(kube: Kube, owner: builders.Owner, name: str, replicas: int) -> bool:
    """Patch Deployment `name`, ours and at 0 copies, to `replicas`; False when it is not asleep."""
    actual = CHILDREN.get("Deployment", owner.namespace, name)
    if replicas <= 0 or actual is None or not is_ours(actual, owner):
        return False
    if (actual.get("spec") or {}).get("replicas") != 0:
        return False
    # The uid: the patch applies only to the Deployment that was ours when cached (uid is immutable).
    patch = {"metadata": {"uid": actual["metadata"]["uid"]}, "spec": {"replicas": replicas}}
    try:
        patched = kube.patch("Deployment", owner.namespace, name, patch)
    except ApiError as error:
        if error.status == HTTP_CONFLICT:
            return False  # another uid: replaced meanwhile, the full pass that follows decides
        raise
    if patched is None:
        return False  # 404, deleted meanwhile: the full pass creates it
    CHILDREN.put(patched)
    metrics.deployment_woken()
    return True


def wake(kube: Kube, namespace: str, name: str) -> Woken:
    """Give the sleeping Deployments their copies back now, if the reports say a request came.

    Errors without an answer (timeouts) raise; the caller's full pass, which follows, has the retries."""
    key = (namespace, name)
    plan = WAKES.plan(key)
    if plan is None:
        return Woken()
    with WAKES.lock(key):
        if not reports_say_awake(plan.owner):
            return Woken()
        woken = tuple(
            (deployment, replicas)
            for deployment, replicas in plan.replicas
            if _wake_one(kube, plan.owner, deployment, replicas)
        )
    if woken:
        logger.info("%s/%s: woke %s (fast path)", namespace, name, ", ".join(f"{d} to {r}" for d, r in woken))
    return Woken(woken)
