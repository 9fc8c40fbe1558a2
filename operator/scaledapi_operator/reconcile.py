"""One reconcile path for create, update, resume, child events and the resync: get -> compare -> act."""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from scaledapi_operator import builders
from scaledapi_operator.builders.common import BACKEND, PROXY, backend_name, proxy_name, proxy_status_name
from scaledapi_operator.compare import differences, is_subset
from scaledapi_operator.endpoints import SERVICE_NAME_LABEL, ready_endpoints
from scaledapi_operator.kube import Kube
from scaledapi_operator.nginx_conf import config_hash, render_nginx_conf
from scaledapi_operator.spec import ScaledApiSpec, SpecError, parse_spec
from scaledapi_operator.status import Observed, Problem, Transition, compute_status, invalid_spec_status

logger = logging.getLogger(__name__)

CREATED = "created"
PATCHED = "patched"
UNCHANGED = "unchanged"
CONFLICT = "conflict"
DELETED = "deleted"

Poster = Callable[[Mapping[str, Any], Transition], None]


@dataclass(frozen=True)
class Applied:
    kind: str
    name: str
    action: str
    obj: dict[str, Any] | None
    detail: str = ""


@dataclass
class Outcome:
    status: dict[str, Any]
    transitions: list[Transition] = field(default_factory=list)
    applied: list[Applied] = field(default_factory=list)
    status_written: bool = False


def owner_of(body: Mapping[str, Any]) -> builders.Owner:
    meta = body["metadata"]
    return builders.Owner(
        name=meta["name"], namespace=meta["namespace"], uid=meta["uid"], generation=meta.get("generation", 0)
    )


def foreign_controller(actual: Mapping[str, Any], uid: str) -> str | None:
    """The controller of `actual` when it is not this ScaledApi (then we must not touch it)."""
    for ref in (actual.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("uid") != uid:
            return f"{ref.get('kind')}/{ref.get('name')}"
    return None


def apply(kube: Kube, owner: builders.Owner, desired: dict[str, Any]) -> Applied:
    """get -> compare -> create / patch / nothing, for one child."""
    kind, name = desired["kind"], desired["metadata"]["name"]
    actual = kube.get(kind, owner.namespace, name)
    if actual is None:
        created = kube.create(desired)
        if created is not None:
            return Applied(kind, name, CREATED, created)
        # 409: created by someone else since our get; compare with what is there now.
        actual = kube.get(kind, owner.namespace, name)
        if actual is None:
            raise RuntimeError(f"{kind} {name} already exists but cannot be read")
    controller = foreign_controller(actual, owner.uid)
    if controller is not None:
        return Applied(kind, name, CONFLICT, actual, f"{kind} {name} is controlled by {controller}")
    if is_subset(desired, actual):
        return Applied(kind, name, UNCHANGED, actual)
    drift = ", ".join(differences(desired, actual)[:5])
    # JSON merge patch: maps merge (server defaults and others' annotations stay) while our lists
    # (containers, env, ports, rules, owner references) replace the actual ones wholesale, so a
    # hand-added element is removed too and the next compare converges.
    patched = kube.patch(kind, owner.namespace, name, desired)
    if patched is None:  # deleted since our get
        created = kube.create(desired)
        return Applied(kind, name, CREATED, created)
    return Applied(kind, name, PATCHED, patched, drift)


def remove(kube: Kube, owner: builders.Owner, kind: str, name: str) -> Applied:
    """Delete a child that is no longer wanted, only if it is ours."""
    actual = kube.get(kind, owner.namespace, name)
    if actual is None:
        return Applied(kind, name, UNCHANGED, None)
    controller = foreign_controller(actual, owner.uid)
    if controller is not None:
        return Applied(kind, name, CONFLICT, actual, f"{kind} {name} is controlled by {controller}")
    kube.delete(kind, owner.namespace, name, uid=actual["metadata"].get("uid"))
    return Applied(kind, name, DELETED, None)


def status_url(owner: builders.Owner, spec: ScaledApiSpec) -> str:
    if spec.proxy.external_url:
        return spec.proxy.external_url
    return f"http://{proxy_name(owner)}.{owner.namespace}.svc:{spec.proxy.port}"


def action_transitions(applied: list[Applied], endpoint_count: int) -> list[Transition]:
    found: list[Transition] = []
    for item in applied:
        if item.action == CREATED:
            found.append(Transition("Normal", "Created", f"created {item.kind} {item.name}"))
        elif item.action == DELETED:
            found.append(Transition("Normal", "Deleted", f"deleted {item.kind} {item.name}"))
        elif item.action == PATCHED and item.kind == "ConfigMap" and item.name.endswith("-proxy"):
            message = f"nginx upstream now has {endpoint_count} ready endpoints"
            found.append(Transition("Normal", "ProxyConfigUpdated", message))
        elif item.action == PATCHED:
            found.append(Transition("Normal", "Updated", f"updated {item.kind} {item.name}: {item.detail}"))
    return found


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_status(kube: Kube, body: Mapping[str, Any], status: dict[str, Any]) -> bool:
    """Merge-patch the status only when it changed; keys that disappeared are removed."""
    previous = body.get("status") or {}
    if previous == status:
        return False
    patch: dict[str, Any] = {key: None for key in previous if key not in status}
    patch.update(status)
    meta = body["metadata"]
    kube.patch_scaledapi_status(meta["namespace"], meta["name"], patch)
    return True


def reconcile(kube: Kube, body: Mapping[str, Any], now: Callable[[], str] = _now) -> Outcome:
    """Bring every child of the ScaledApi `body` to its desired state and write the status."""
    owner = owner_of(body)
    previous = body.get("status") or {}
    try:
        spec = parse_spec(body.get("spec") or {})
    except SpecError as error:
        status, found = invalid_spec_status(owner.generation, str(error), previous, now())
        return Outcome(status, found, [], _write_status(kube, body, status))

    # The nginx upstream: ready addresses of the backend's EndpointSlices, in a stable order.
    slices = kube.list_objects(
        "EndpointSlice", owner.namespace, f"{SERVICE_NAME_LABEL}={backend_name(owner)}"
    )
    endpoints = ready_endpoints(slices, spec.backend.port)
    text = render_nginx_conf(builders.nginx_settings(spec), endpoints)
    digest = config_hash(text)

    desired = [
        builders.proxy_service_account(owner),
        builders.proxy_role(owner),
        builders.proxy_role_binding(owner),
        builders.proxy_status_configmap(owner),
        builders.proxy_configmap(owner, text, digest),
        builders.backend_service(owner, spec),
        builders.backend_deployment(owner, spec),
        builders.proxy_deployment(owner, spec),
        builders.proxy_service(owner, spec),
    ]
    applied = [apply(kube, owner, child) for child in desired]
    pdb = builders.backend_pdb(owner, spec)
    if pdb is not None:
        applied.append(apply(kube, owner, pdb))
    else:
        applied.append(remove(kube, owner, "PodDisruptionBudget", backend_name(owner)))

    by_key = {(item.kind, item.name): item.obj for item in applied}
    status_cm = by_key.get(("ConfigMap", proxy_status_name(owner))) or {}
    observed = Observed(
        generation=owner.generation,
        spec=spec,
        selector=builders.selector_string(owner, BACKEND),
        url=status_url(owner, spec),
        config_hash=digest,
        endpoints=[f"{e.ip}:{e.port}" for e in endpoints],
        backend=by_key.get(("Deployment", backend_name(owner))),
        proxy=by_key.get(("Deployment", proxy_name(owner))),
        backend_pods=kube.list_objects("Pod", owner.namespace, builders.selector_string(owner, BACKEND)),
        proxy_pods=kube.list_objects("Pod", owner.namespace, builders.selector_string(owner, PROXY)),
        proxy_reports=status_cm.get("data") or {},
        problems=[Problem("NameConflict", item.detail) for item in applied if item.action == CONFLICT],
    )
    status, found = compute_status(observed, previous, now())
    written = _write_status(kube, body, status)
    for item in applied:
        if item.action not in (UNCHANGED, CONFLICT):
            logger.info("%s %s %s/%s %s", item.action, item.kind, owner.namespace, item.name, item.detail)
    return Outcome(status, action_transitions(applied, len(endpoints)) + found, applied, written)


class Locks:
    """One lock per ScaledApi, so that two reconciles of the same object never interleave.

    Requests coalesce: while one reconcile runs, at most one more waits; any further request is
    dropped, because the waiting one reads everything afresh after the running one finishes.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._waiting: set[tuple[str, str]] = set()

    def of(self, namespace: str, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault((namespace, name), threading.Lock())

    def try_wait(self, namespace: str, name: str) -> bool:
        """Become the one waiting request; False when another request is already waiting."""
        with self._guard:
            if (namespace, name) in self._waiting:
                return False
            self._waiting.add((namespace, name))
            return True

    def started(self, namespace: str, name: str) -> None:
        with self._guard:
            self._waiting.discard((namespace, name))

    def forget(self, namespace: str, name: str) -> None:
        with self._guard:
            self._locks.pop((namespace, name), None)


LOCKS = Locks()


def reconcile_by_name(kube: Kube, namespace: str, name: str, post: Poster) -> Outcome | None:
    """Re-read the ScaledApi under its lock (a fresh body, not a stale event), reconcile, post events.

    Returns None when the ScaledApi is gone or another request for it is already waiting.
    """
    if not LOCKS.try_wait(namespace, name):
        return None
    try:
        with LOCKS.of(namespace, name):
            LOCKS.started(namespace, name)
            body = kube.get_scaledapi(namespace, name)
            if body is None or body["metadata"].get("deletionTimestamp"):
                LOCKS.forget(namespace, name)
                return None
            outcome = reconcile(kube, body)
    finally:
        LOCKS.started(namespace, name)
    for transition in outcome.transitions:
        post(body, transition)
    return outcome
