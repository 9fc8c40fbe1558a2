"""The operator's Prometheus metrics: this module owns the registry; handlers and the reconcile only
call the functions below.

Served on SCALEDAPI_METRICS_PORT (default 9102; 0 turns it off) by every replica: a standby's
`scaledapi_operator_leader` is 0 and its reconcile counters stay still, which is how a dashboard tells
the leader apart.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

DEFAULT_PORT = 9102
PORT_ENV = "SCALEDAPI_METRICS_PORT"

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter(
    "scaledapi_operator_reconciles",
    "Reconcile requests of a ScaledApi, by what asked (create, update, resume, child, endpointslice,"
    " resync, retry, leader) and the result (ok, refused: the API server refused a child, error: the pass"
    " raised, coalesced/explained: no pass was needed, gone).",
    ["trigger", "result"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "scaledapi_operator_reconcile_duration_seconds",
    "Duration of the reconcile passes that ran, by trigger.",
    ["trigger"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
CHILD_WRITES = Counter(
    "scaledapi_operator_child_writes",
    "Writes to children, by kind and action (created, patched, adopted, deleted, failed, conflict).",
    ["kind", "action"],
    registry=REGISTRY,
)
DRIFT_CORRECTIONS = Counter(
    "scaledapi_operator_drift_corrections",
    "Children patched back to their desired state while the ScaledApi's spec had not changed (someone"
    " else changed them); the nginx ConfigMap, which follows the endpoints, is not counted.",
    ["kind"],
    registry=REGISTRY,
)
CONFIG_WRITES = Counter(
    "scaledapi_operator_proxy_config_writes",
    "New nginx configs written into ConfigMap NAME-proxy (full passes and the EndpointSlice fast path).",
    ["namespace", "scaledapi"],
    registry=REGISTRY,
)
DESIRED = Gauge(
    "scaledapi_desired_replicas",
    "Backend copies the ScaledApi asks for (spec.replicas).",
    ["namespace", "scaledapi"],
    registry=REGISTRY,
)
READY = Gauge(
    "scaledapi_ready_replicas",
    "Backend copies ready (status.readyReplicas).",
    ["namespace", "scaledapi"],
    registry=REGISTRY,
)
CONDITION = Gauge(
    "scaledapi_condition",
    "1 when the ScaledApi's condition (Ready, Progressing, Degraded) is True, else 0.",
    ["namespace", "scaledapi", "type"],
    registry=REGISTRY,
)
LEADER = Gauge(
    "scaledapi_operator_leader", "1 while this replica holds the Lease and reconciles.", registry=REGISTRY
)
RETRYING = Gauge(
    "scaledapi_operator_retrying",
    "ScaledApis whose last reconcile failed and that wait for a retry.",
    registry=REGISTRY,
)

_CONDITION_TYPES = ("Ready", "Progressing", "Degraded")


class WrittenChild(Protocol):
    """What the reconcile reports of each child (reconcile.Applied, a frozen dataclass)."""

    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def action(self) -> str: ...


def port_from_environment() -> int | None:
    """SCALEDAPI_METRICS_PORT, or the default; None when it is 0. Anything else is an error naming it."""
    text = os.environ.get(PORT_ENV, "").strip() or str(DEFAULT_PORT)
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise ValueError(f"{PORT_ENV} must be a port number (0 turns metrics off), got {text!r}")
    return int(text) or None


def serve(port: int) -> None:
    """Answer GET /metrics on `port` from a daemon thread of prometheus_client."""
    start_http_server(port, registry=REGISTRY)


def reconciled(trigger: str, result: str, seconds: float | None = None) -> None:
    RECONCILES.labels(trigger=trigger, result=result).inc()
    if seconds is not None:
        RECONCILE_SECONDS.labels(trigger=trigger).observe(seconds)


def children_written(
    namespace: str, name: str, applied: Iterable[WrittenChild], *, spec_unchanged: bool, config: str
) -> None:
    """Count the writes of one pass; `config` is the name of the nginx ConfigMap (NAME-proxy)."""
    for item in applied:
        if item.action in ("unchanged", "held"):
            continue
        CHILD_WRITES.labels(kind=item.kind, action=item.action).inc()
        is_config = item.kind == "ConfigMap" and item.name == config
        if is_config and item.action in ("created", "patched"):
            CONFIG_WRITES.labels(namespace=namespace, scaledapi=name).inc()
        elif item.action == "patched" and spec_unchanged:
            DRIFT_CORRECTIONS.labels(kind=item.kind).inc()


def config_written(namespace: str, name: str) -> None:
    """The fast path wrote a new nginx config (upstream.sync_upstream)."""
    CHILD_WRITES.labels(kind="ConfigMap", action="patched").inc()
    CONFIG_WRITES.labels(namespace=namespace, scaledapi=name).inc()


def deployment_woken() -> None:
    """The wake-up's fast path gave a sleeping Deployment its copies back (wake.py), outside a pass."""
    CHILD_WRITES.labels(kind="Deployment", action="patched").inc()


def status_observed(namespace: str, name: str, desired: int, status: Mapping[str, Any]) -> None:
    DESIRED.labels(namespace=namespace, scaledapi=name).set(desired)
    READY.labels(namespace=namespace, scaledapi=name).set(int(status.get("readyReplicas") or 0))
    states = {
        c.get("type"): c.get("status") for c in status.get("conditions") or [] if isinstance(c, Mapping)
    }
    for kind in _CONDITION_TYPES:
        CONDITION.labels(namespace=namespace, scaledapi=name, type=kind).set(
            1 if states.get(kind) == "True" else 0
        )


def forget(namespace: str, name: str) -> None:
    """A ScaledApi is gone: its series go too (a deleted one must not look ready forever)."""
    for gauge in (DESIRED, READY):
        _remove(gauge, namespace, name)
    for kind in _CONDITION_TYPES:
        _remove(CONDITION, namespace, name, kind)
    _remove(CONFIG_WRITES, namespace, name)


def _remove(metric: Gauge | Counter, *labels: str) -> None:
    try:
        metric.remove(*labels)
    except KeyError:
        return  # never set: nothing to remove


def leading(is_leader: bool) -> None:
    LEADER.set(1 if is_leader else 0)


def retrying(count: int) -> None:
    RETRYING.set(count)
