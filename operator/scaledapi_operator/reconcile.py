"""One reconcile path for create, update, resume, child events and the resync: get -> compare -> act."""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from scaledapi_operator import builders, metrics, wake
from scaledapi_operator.builders.common import (
    BACKEND,
    CANARY,
    PROXY,
    backend_name,
    canary_name,
    proxy_name,
    proxy_status_name,
)
from scaledapi_operator.cache import CHILDREN
from scaledapi_operator.compare import differences, hand_added, is_subset, path_text, undo_patch
from scaledapi_operator.kube import HTTP_CONFLICT, ApiError, Kube, error_message
from scaledapi_operator.ownership import is_ours, ownership_conflict, with_other_owners
from scaledapi_operator.seen import SEEN, Trigger
from scaledapi_operator.settings import monitoring_namespace
from scaledapi_operator.sleep import is_asleep, running_spec
from scaledapi_operator.spec import ScaledApiSpec, parse_spec
from scaledapi_operator.spec_errors import SpecError
from scaledapi_operator.status import Observed, Problem, Transition, compute_status, invalid_spec_status
from scaledapi_operator.upstream import UPSTREAMS, Plan, Source, Upstream, list_upstream, under_lock
from scaledapi_proxy.report import removal_patch, stale_keys

logger = logging.getLogger(__name__)

CREATED = "created"
PATCHED = "patched"
ADOPTED = "adopted"
UNCHANGED = "unchanged"
CONFLICT = "conflict"
DELETED = "deleted"
FAILED = "failed"
HELD = "held"  # not applied while an object it relies on belongs to someone else

# Degraded reasons of children the operator could not bring to their desired state.
NAME_CONFLICT = "NameConflict"
CHILD_REJECTED = "ChildRejected"  # the API server refused the request (4xx): needs a change somewhere
CHILD_APPLY_FAILED = "ChildApplyFailed"  # the API server failed it (5xx, e.g. a webhook): retried
# A create answered 409 (already exists) yet the object cannot be read: how often to try again in a pass.
CREATE_ATTEMPTS = 2

Poster = Callable[[Mapping[str, Any], Transition], None]


@dataclass(frozen=True)
class Applied:
    kind: str
    name: str
    action: str
    obj: dict[str, Any] | None
    detail: str = ""
    reason: str = ""  # NAME_CONFLICT, CHILD_REJECTED or CHILD_APPLY_FAILED when not applied


@dataclass
class Outcome:
    status: dict[str, Any]
    transitions: list[Transition] = field(default_factory=list)
    applied: list[Applied] = field(default_factory=list)
    status_written: bool = False

    @property
    def failed(self) -> list[Applied]:
        """Children the API server refused or failed: the reconcile must be tried again (with backoff)."""
        return [item for item in self.applied if item.action == FAILED]


def owner_of(body: Mapping[str, Any]) -> builders.Owner:
    meta = body["metadata"]
    return builders.Owner(
        name=meta["name"], namespace=meta["namespace"], uid=meta["uid"], generation=meta.get("generation", 0)
    )


def apply(kube: Kube, owner: builders.Owner, desired: dict[str, Any]) -> Applied:
    """get -> compare -> create / patch / nothing, for one child. Raises ApiError when refused.

    The get is the watch cache's body (cache.py). A child that is not there is created at once: each of
    ours that exists is cached (by its watch event, or when we wrote it), so a miss is nearly always one
    to create, and a read first would double the requests of a first pass. When it does exist (the
    watches are still listing after a restart, or it is a user's object, never watched), the create is
    answered 409 and it is read."""
    kind, name = desired["kind"], desired["metadata"]["name"]
    actual = CHILDREN.get(kind, owner.namespace, name)
    for _ in range(CREATE_ATTEMPTS):
        if actual is not None:
            break
        created = kube.create(desired)
        if created is not None:
            CHILDREN.put(created)
            return Applied(kind, name, CREATED, created)
        # 409: created by someone else since our get; compare with what is there now.
        actual = kube.get(kind, owner.namespace, name)
    if actual is None:
        message = f"{kind}/{name}: create answered 409 (already exists) but the object cannot be read"
        return Applied(kind, name, FAILED, None, message, CHILD_REJECTED)
    conflict = ownership_conflict(actual, owner)
    if conflict is not None:
        return Applied(kind, name, CONFLICT, None, conflict, NAME_CONFLICT)
    adopting = not is_ours(actual, owner)
    desired = with_other_owners(desired, actual, owner)
    added = hand_added(desired, actual)
    if not added and is_subset(desired, actual):
        return Applied(kind, name, UNCHANGED, actual)
    drift = ", ".join([*differences(desired, actual), *(f"{path_text(p)} (added)" for p in added)][:5])
    # JSON merge patch: maps merge (server defaults and others' annotations stay) while our lists
    # (containers, env, ports, rules, owner references) replace the actual ones wholesale, so a
    # hand-added element is removed too and the next compare converges. Hand-added map fields get null.
    patched = kube.patch(kind, owner.namespace, name, undo_patch(desired, added))
    if patched is None:  # deleted since our get
        created = kube.create(desired)
        CHILDREN.put(created)
        return Applied(kind, name, CREATED, created)
    CHILDREN.put(patched)
    return Applied(kind, name, ADOPTED if adopting else PATCHED, patched, drift)


def apply_child(kube: Kube, owner: builders.Owner, desired: dict[str, Any]) -> Applied:
    """apply(), with the API server's refusal of this one child recorded instead of raised, so that every
    other child is still reconciled and the status still written. Errors without an answer (timeouts,
    a refused connection) still raise: the API server is unreachable and the whole pass is retried."""
    try:
        return apply(kube, owner, desired)
    except ApiError as error:
        return refused(owner, desired["kind"], desired["metadata"]["name"], "applied", error)


def refused(owner: builders.Owner, kind: str, name: str, what: str, error: ApiError) -> Applied:
    """The API server's answer to a request for one child, as a FAILED child with a Degraded reason."""
    reason = CHILD_REJECTED if 400 <= (error.status or 0) < 500 else CHILD_APPLY_FAILED
    message = f"{kind}/{name} was not {what}: {error_message(error)}"
    logger.warning("%s/%s: %s", owner.namespace, owner.name, message)
    return Applied(kind, name, FAILED, None, message, reason)


def held(desired: Mapping[str, Any], blockers: Sequence[Applied]) -> Applied:
    """A child not applied (neither created nor changed) while objects it relies on are not ours."""
    kind, name = desired["kind"], desired["metadata"]["name"]
    waiting_for = ", ".join(f"{item.kind}/{item.name}" for item in blockers)
    return Applied(kind, name, HELD, None, f"{kind}/{name} waits until {waiting_for} is ours")


def remove(kube: Kube, owner: builders.Owner, kind: str, name: str) -> Applied:
    """Delete a child that is no longer wanted, only if it is ours (anything else is left alone).

    Only the watch cache is asked: a child of ours that exists is in it (put when we created it, or by
    its watch event, which also brings a pass), and what is not ours is left alone anyway, so a read of
    the API server on every pass for a budget that is rightly absent would buy nothing."""
    try:
        actual = CHILDREN.get(kind, owner.namespace, name)
        if actual is None or not is_ours(actual, owner):
            return Applied(kind, name, UNCHANGED, None)
        kube.delete(kind, owner.namespace, name, uid=actual["metadata"].get("uid"))
        CHILDREN.drop(actual)
    except ApiError as error:
        return refused(owner, kind, name, "deleted", error)
    return Applied(kind, name, DELETED, None)


def status_url(owner: builders.Owner, spec: ScaledApiSpec) -> str:
    if spec.proxy.external_url:
        return spec.proxy.external_url
    return f"http://{proxy_name(owner)}.{owner.namespace}.svc:{spec.proxy.port}"


def deprecations(spec: ScaledApiSpec, generation: int, previous: Mapping[str, Any]) -> list[Transition]:
    """One Warning per new generation that still uses a deprecated field (not one per reconcile)."""
    if spec.backend.greeting is None or previous.get("observedGeneration") == generation:
        return []
    message = (
        "spec.backend.greeting is deprecated: it only sets env GREETING of the bundled backend; set"
        " spec.backend.env: [{name: GREETING, value: ...}] instead and remove spec.backend.greeting"
    )
    return [Transition("Warning", "DeprecatedField", message)]


def sweep_proxy_reports(
    kube: Kube, owner: builders.Owner, status_cm: Mapping[str, Any], proxy_pods: Sequence[Mapping[str, Any]]
) -> None:
    """Remove the reports of nginx pods that are gone without withdrawing their own (killed, node lost);
    the pods cannot, as they may not list each other. Only if NAME-proxy-status did not change since it
    was read: a 409 means a report arrived meanwhile and its event brings the next pass; 404 means it
    is gone and the next pass creates it."""
    if not status_cm:
        return
    live = [
        pod["metadata"]["name"]
        for pod in proxy_pods
        if (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
    ]
    stale = stale_keys(status_cm.get("data") or {}, live)
    if not stale:
        return
    patch = removal_patch(stale, status_cm["metadata"]["resourceVersion"])
    try:
        kube.patch("ConfigMap", owner.namespace, proxy_status_name(owner), patch)
    except ApiError as error:
        if error.status != HTTP_CONFLICT:
            raise
        return
    logger.info("%s/%s: removed reports of gone nginx pods: %s", owner.namespace, owner.name, stale)


def action_transitions(applied: list[Applied], endpoint_count: int) -> list[Transition]:
    found: list[Transition] = []
    for item in applied:
        if item.action == CREATED:
            found.append(Transition("Normal", "Created", f"created {item.kind} {item.name}"))
        elif item.action == DELETED:
            found.append(Transition("Normal", "Deleted", f"deleted {item.kind} {item.name}"))
        elif item.action == ADOPTED:
            found.append(Transition("Normal", "Adopted", f"adopted {item.kind} {item.name}"))
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


def write_upstream(
    kube: Kube,
    owner: builders.Owner,
    spec: ScaledApiSpec,
    *,
    slices_ours: bool,
    canary_ours: bool,
    asleep: bool = False,
) -> tuple[Upstream, Applied]:
    """List the ready endpoints, render and apply ConfigMap NAME-proxy, under the fast path's lock, and
    leave the fast path its plan (none while NAME-proxy or NAME-backend is not ours)."""
    key = (owner.namespace, owner.name)
    weight = spec.canary.weight if spec.canary is not None and canary_ours else None
    source = Source(builders.nginx_settings(spec), spec.backend.port, weight, asleep)

    def work() -> tuple[Upstream, Applied]:
        upstream = list_upstream(kube, owner, source, with_slices=slices_ours)
        config = apply_child(kube, owner, builders.proxy_configmap(owner, upstream.text, upstream.digest))
        ours = slices_ours and config.action not in (CONFLICT, FAILED, HELD) and config.obj is not None
        plan = None
        if ours and config.obj is not None:
            plan = Plan(owner, source, str(config.obj["metadata"]["uid"]), upstream.digest)
        UPSTREAMS.remember(key, plan)
        return upstream, config

    return under_lock(key, work)


def apply_or_remove(
    kube: Kube, owner: builders.Owner, kind: str, name: str, desired: dict[str, Any] | None
) -> Applied:
    """A child that exists only while the spec asks for it (a budget, the canary): applied, or ours
    removed."""
    if desired is not None:
        return apply_child(kube, owner, desired)
    return remove(kube, owner, kind, name)


def reconcile(kube: Kube, body: Mapping[str, Any], now: Callable[[], str] = _now) -> Outcome:
    """Bring every child of the ScaledApi `body` to its desired state and write the status."""
    owner = owner_of(body)
    previous = body.get("status") or {}
    try:
        spec = parse_spec(body.get("spec") or {})
    except SpecError as error:
        status, found = invalid_spec_status(owner.generation, str(error), previous, now())
        return Outcome(status, found, [], _write_status(kube, body, status))

    wanted = spec
    canary = canary_name(owner)

    def decide_and_scale() -> tuple[bool, Applied, Applied]:
        """Asleep or not, and the Deployments at that many copies: under the wake-up's lock (wake.py)."""
        # Scale to zero (sleep.py): asleep while every nginx pod reports idle; the watched reports do.
        reports_cm = CHILDREN.get("ConfigMap", owner.namespace, proxy_status_name(owner))
        ours = reports_cm if reports_cm is not None and is_ours(reports_cm, owner) else None
        asleep = is_asleep(wanted, ours)
        running = running_spec(wanted, asleep)
        # The backend Deployment first: a new replica count (kubectl scale) is what a user waits for.
        backend = apply_child(kube, owner, builders.backend_deployment(owner, running))
        # The canary (spec.canary), or ours removed when it is gone from the spec (a promotion).
        canary_desired = builders.canary_deployment(owner, running)
        return asleep, backend, apply_or_remove(kube, owner, "Deployment", canary, canary_desired)

    asleep, backend_deployment, canary_deployment = wake.under_lock(
        (owner.namespace, owner.name), decide_and_scale
    )
    spec = running_spec(wanted, asleep)
    plan = None
    if wanted.scale_to_zero is not None:  # what a wake-up restores: the Deployments built awake
        awake = [builders.backend_deployment(owner, wanted), builders.canary_deployment(owner, wanted)]
        plan = wake.plan_of(owner, awake)
    wake.WAKES.remember((owner.namespace, owner.name), plan)
    # Then the Services: only when NAME-backend is ours are its EndpointSlices our pods.
    backend_service = apply_child(kube, owner, builders.backend_service(owner, spec))
    canary_service = apply_or_remove(kube, owner, "Service", canary, builders.canary_service(owner, spec))
    upstream, config = write_upstream(
        kube,
        owner,
        spec,
        slices_ours=backend_service.action != CONFLICT,
        canary_ours=canary_service.action not in (CONFLICT, FAILED),
        asleep=asleep,
    )

    # Each child on its own: a refusal of one is recorded and the others are still reconciled.
    account, role, reports = (
        apply_child(kube, owner, child)
        for child in (
            builders.proxy_service_account(owner),
            builders.proxy_role(owner),
            builders.proxy_status_configmap(owner),
        )
    )
    # The nginx pods run as ServiceAccount NAME-proxy with Role NAME-proxy, read ConfigMap NAME-proxy
    # and patch NAME-proxy-status. While one of these is someone else's, binding the Role or running
    # the pods would hand our rights to it, or let our pods read and write it: those two wait.
    role_binding = builders.proxy_role_binding(owner)
    identity = [item for item in (account, role) if item.action == CONFLICT]
    binding = held(role_binding, identity) if identity else apply_child(kube, owner, role_binding)
    blockers = [item for item in (account, role, binding, reports, config) if item.action == CONFLICT]
    proxy_deployment = builders.proxy_deployment(owner, spec)
    applied = [
        backend_deployment,
        backend_service,
        canary_deployment,
        canary_service,
        account,
        role,
        reports,
        config,
        binding,
        held(proxy_deployment, blockers) if blockers else apply_child(kube, owner, proxy_deployment),
        apply_child(kube, owner, builders.proxy_service(owner, spec)),
        apply_child(kube, owner, builders.backend_network_policy(owner)),
        apply_child(kube, owner, builders.proxy_network_policy(owner, monitoring_namespace())),
        apply_or_remove(kube, owner, "NetworkPolicy", canary, builders.canary_network_policy(owner, spec)),
        # A budget only while there is more than one copy to keep.
        apply_or_remove(
            kube, owner, "PodDisruptionBudget", backend_name(owner), builders.backend_pdb(owner, spec)
        ),
        apply_or_remove(
            kube, owner, "PodDisruptionBudget", proxy_name(owner), builders.proxy_pdb(owner, spec)
        ),
    ]

    # Only what is ours tells the status anything (a foreign Deployment's replicas are not ours).
    by_key = {
        (item.kind, item.name): item.obj for item in applied if item.action not in (CONFLICT, FAILED, HELD)
    }
    status_cm = by_key.get(("ConfigMap", proxy_status_name(owner))) or {}
    # Listed after the reports were read: a report of a pod that exists now is never taken for stale.
    proxy_pods = kube.list_objects("Pod", owner.namespace, builders.selector_string(owner, PROXY))
    sweep_proxy_reports(kube, owner, status_cm, proxy_pods)
    observed = Observed(
        generation=owner.generation,
        spec=spec,
        selector=builders.selector_string(owner, BACKEND),
        url=status_url(owner, spec),
        config_hash=upstream.digest,
        endpoints=[f"{e.ip}:{e.port}" for e in upstream.endpoints],
        backend=by_key.get(("Deployment", backend_name(owner))),
        proxy=by_key.get(("Deployment", proxy_name(owner))),
        backend_pods=kube.list_objects("Pod", owner.namespace, builders.selector_string(owner, BACKEND)),
        canary=by_key.get(("Deployment", canary)),
        canary_pods=(
            kube.list_objects("Pod", owner.namespace, builders.selector_string(owner, CANARY))
            if spec.canary is not None
            else []
        ),
        split=upstream.split,
        canary_endpoints=upstream.canary_endpoints,
        proxy_pods=proxy_pods,
        proxy_reports=status_cm.get("data") or {},
        problems=[Problem(item.reason, item.detail) for item in applied if item.action in (CONFLICT, FAILED)],
        asleep=asleep if wanted.scale_to_zero is not None else None,
    )
    status, found = compute_status(observed, previous, now())
    found += deprecations(spec, owner.generation, previous)
    written = _write_status(kube, body, status)
    metrics.children_written(
        owner.namespace,
        owner.name,
        applied,
        spec_unchanged=previous.get("observedGeneration") == owner.generation,
        config=proxy_name(owner),
    )
    metrics.status_observed(owner.namespace, owner.name, wanted.replicas, status)
    # Everything this pass read or wrote: the watch events that only echo it trigger no other pass.
    key = (owner.namespace, owner.name)
    SEEN.saw(key, [item.obj for item in applied])
    SEEN.saw_all(key, "Pod", [*proxy_pods, *observed.backend_pods, *observed.canary_pods])
    SEEN.saw_all(key, "EndpointSlice", upstream.slices)
    for item in applied:
        if item.action not in (UNCHANGED, CONFLICT, FAILED, HELD):
            logger.info("%s %s %s/%s %s", item.action, item.kind, owner.namespace, item.name, item.detail)
    return Outcome(status, action_transitions(applied, len(upstream.endpoints)) + found, applied, written)


class Locks:
    """Which ScaledApis a pass is running for, and what was asked for them meanwhile.

    One pass at a time per ScaledApi. A request that comes while one runs does not wait, so it holds no
    thread of kopf's pool (at 1000 ScaledApis, waiting requests held most of them): its trigger is noted,
    and the running pass's thread, once done, runs one more pass, unless the pass that just ended already
    saw what every noted trigger reports (seen.SEEN). That next pass reads everything afresh, so any
    number of requests during one pass cost at most one more.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        # Present while a pass runs; the triggers noted since that pass started.
        self._running: dict[tuple[str, str], list[Trigger]] = {}

    def begin(self, namespace: str, name: str, trigger: Trigger = None) -> bool:
        """Start a pass (True), or note `trigger` for the running one (False)."""
        with self._guard:
            noted = self._running.get((namespace, name))
            if noted is not None:
                noted.append(trigger)
                return False
            self._running[(namespace, name)] = []
            return True

    def noted(self, namespace: str, name: str) -> list[Trigger] | None:
        """A pass ended: the triggers noted during it, for which the caller runs on; or None, and the
        ScaledApi has no pass running any more."""
        with self._guard:
            noted = self._running.get((namespace, name))
            if not noted:
                self._running.pop((namespace, name), None)
                return None
            self._running[(namespace, name)] = []
            return noted

    def end(self, namespace: str, name: str) -> None:
        """No pass runs any more (it raised, or the ScaledApi is gone); noted triggers are dropped: the
        retry queue reconciles a failed ScaledApi again in full."""
        with self._guard:
            self._running.pop((namespace, name), None)

    def running(self, namespace: str, name: str) -> bool:
        with self._guard:
            return (namespace, name) in self._running


LOCKS = Locks()


@dataclass(frozen=True)
class Skipped:
    """reconcile_by_name did not reconcile: the ScaledApi is gone (or being deleted), a pass for it is
    running and takes this request along, or an earlier pass saw what triggered it."""

    gone: bool
    reason: str = ""


GONE = Skipped(gone=True, reason="gone")
COALESCED = Skipped(gone=False, reason="coalesced")
EXPLAINED = Skipped(gone=False, reason="explained")


class Begun:
    """The caller already started the pass with LOCKS.begin (an event handler on the event loop)."""


BEGUN = Begun()


def reconcile_by_name(
    kube: Kube, namespace: str, name: str, post: Poster, trigger: Trigger | Begun = None
) -> Outcome | Skipped:
    """Re-read the ScaledApi (a fresh body, not a stale event), reconcile, post events; then again while
    requests noted during a pass need it. No pass when an earlier one already saw what `trigger` says."""
    key = (namespace, name)
    if not isinstance(trigger, Begun):
        if SEEN.explains(key, trigger):
            return EXPLAINED
        if not LOCKS.begin(namespace, name, trigger):
            return COALESCED
    try:
        while True:
            result = _one_pass(kube, namespace, name, post)
            if result is GONE:
                LOCKS.end(namespace, name)
                return result
            while True:
                noted = LOCKS.noted(namespace, name)
                if noted is None:
                    return result
                if not all(SEEN.explains(key, each) for each in noted):
                    break  # something changed that the pass did not see: one more
    except BaseException:
        LOCKS.end(namespace, name)
        raise


def _one_pass(kube: Kube, namespace: str, name: str, post: Poster) -> Outcome | Skipped:
    key = (namespace, name)
    body = kube.get_scaledapi(namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        UPSTREAMS.forget(key)
        wake.WAKES.forget(key)
        SEEN.forget(key)
        metrics.forget(namespace, name)
        return GONE
    outcome = reconcile(kube, body)
    SEEN.finished(key)
    for transition in outcome.transitions:
        post(body, transition)
    return outcome
