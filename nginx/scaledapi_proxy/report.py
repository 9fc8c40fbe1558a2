"""The report each nginx pod merge-patches into ConfigMap ``NAME-proxy-status`` (no I/O).

Keys are pod names. A pod removes its own key when it stops (``withdrawal_patch``); keys of pods that
vanished without a stop (killed, node lost) can only be found by someone who may list the proxy pods:
``stale_keys`` and ``removal_patch`` are the pure parts of that sweep.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from typing import Any

from scaledapi_proxy.applier import shorten


def rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def report_value(
    config_hash: str, state: str, message: str, when: dt.datetime, idle: bool | None = None
) -> str:
    """The pod's report; ``idle`` only while its config enables scale to zero (zero.py)."""
    report: dict[str, Any] = {
        "hash": config_hash,
        "state": state,
        "message": shorten(message),
        "time": rfc3339(when),
    }
    if idle is not None:
        report["idle"] = idle
    return json.dumps(report, sort_keys=True)


def report_patch(
    pod_name: str, config_hash: str, state: str, message: str, when: dt.datetime, idle: bool | None = None
) -> dict[str, Any]:
    """JSON merge patch body: only key ``pod_name`` of ``data`` changes, other pods' keys stay."""
    return {"data": {pod_name: report_value(config_hash, state, message, when, idle)}}


def withdrawal_patch(pod_name: str) -> dict[str, Any]:
    """JSON merge patch body removing key ``pod_name`` (null deletes a key), other pods' keys stay."""
    return {"data": {pod_name: None}}


def stale_keys(data: Mapping[str, str], live_pods: Iterable[str]) -> list[str]:
    """Keys of ``data`` that belong to no live pod, sorted.

    ``live_pods``: names of the proxy pods (label selector of the proxy Deployment) not in phase Succeeded
    or Failed, listed *after* ``data`` was read, so that a key a pod wrote before the read is never taken
    for stale while the pod exists.
    """
    live = set(live_pods)
    return sorted(key for key in data if key not in live)


def removal_patch(keys: Iterable[str], resource_version: str) -> dict[str, Any]:
    """Merge patch removing ``keys``, applied only if the ConfigMap is still at ``resource_version``.

    The API server answers 409 Conflict when the object changed since it was read (a report arrived):
    read again and recompute instead of removing a key that was just written.
    """
    return {"metadata": {"resourceVersion": resource_version}, "data": dict.fromkeys(keys)}
