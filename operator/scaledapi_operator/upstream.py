"""The nginx upstream of a ScaledApi: rendered from its EndpointSlices and written into ConfigMap
NAME-proxy, by the full reconcile and by a fast path for EndpointSlice changes.

A full reconcile reads every child (about fifteen requests) and queues behind the reconcile already
running; a pod that became Ready must reach nginx sooner than that. The fast path (`sync_upstream`)
makes two requests: it lists the EndpointSlices of NAME-backend (and of NAME-canary) and, only when the
text changed, patches NAME-proxy. What else it needs (the nginx settings, the backend port, the canary's
weight, the uid of our ConfigMap, the hash last written) is the `Plan` that the last full reconcile
left; with no plan (the operator just started, or NAME-proxy is not ours) it writes nothing and the full
reconcile decides.

Both paths list the slices and write NAME-proxy under one lock per ScaledApi, so the later list is
always the later write: a slow reconcile never puts back an upstream older than the fast path's.
Requests coalesce: one runs, one waits (a fast path is only two requests), further ones are dropped,
because the waiting one lists afresh.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from scaledapi_operator import builders
from scaledapi_operator.builders.common import backend_name, canary_name, proxy_name
from scaledapi_operator.cache import CHILDREN
from scaledapi_operator.endpoints import (
    SERVICE_NAME_LABEL,
    SLICE_MANAGED_BY_LABEL,
    foreign_slices,
    ready_endpoints,
)
from scaledapi_operator.keyed import Key, KeyedPlans
from scaledapi_operator.kube import ApiError, Kube, error_message
from scaledapi_operator.nginx_conf import Endpoint, NginxSettings, config_hash, render_nginx_conf
from scaledapi_operator.weights import Split, weighted

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Upstream:
    """The rendered nginx config of one moment's ready endpoints."""

    endpoints: list[Endpoint]
    text: str
    digest: str
    slices: list[dict[str, Any]] = field(default_factory=list)  # the EndpointSlices it was made of
    split: Split | None = None  # the percent of each version, while a canary runs
    canary_endpoints: int = 0  # how many of `endpoints` are canary pods


@dataclass(frozen=True)
class Source:
    """What an upstream is rendered from besides the slices: the nginx settings, the backend port, and
    the canary's weight (None: no canary, or its Service is not ours, so its slices are not our pods)."""

    settings: NginxSettings
    backend_port: int
    canary_weight: int | None = None
    asleep: bool = False  # scale to zero: the backend sleeps, nginx holds requests whatever the slices say


@dataclass(frozen=True)
class Plan:
    """What the fast path needs besides the slices, as the last full reconcile left it."""

    owner: builders.Owner
    source: Source
    configmap_uid: str
    written_digest: str


class UpstreamLocks(KeyedPlans[Plan]):
    """One write lock and one remembered Plan per ScaledApi (a None plan: NAME-proxy not ours, or not
    written), with coalescing of waiting requests."""

    def __init__(self) -> None:
        super().__init__()
        self._waiting: set[Key] = set()

    def try_wait(self, key: Key) -> bool:
        """Become the one waiting request; False when another request is already waiting."""
        with self._guard:
            if key in self._waiting:
                return False
            self._waiting.add(key)
            return True

    def started(self, key: Key) -> None:
        with self._guard:
            self._waiting.discard(key)


UPSTREAMS = UpstreamLocks()


def _slice_selector(names: list[str]) -> str:
    if len(names) == 1:
        return f"{SERVICE_NAME_LABEL}={names[0]}"
    return f"{SERVICE_NAME_LABEL} in ({','.join(names)})"


def _of_service(slices: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [
        s for s in slices if ((s.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL) == name
    ]


class ForeignSlices:
    """Which foreign EndpointSlices (not the EndpointSlice controller's, endpoints.is_controller_slice)
    were logged: each is logged once, when first listed, by uid."""

    LIMIT = 10000  # forgotten all at once past this: a slice logged again now and then costs nothing

    def __init__(self) -> None:
        self._logged: set[str] = set()
        self._guard = threading.Lock()

    def log_new(self, owner: builders.Owner, slices: list[dict[str, Any]]) -> None:
        for endpoint_slice in foreign_slices(slices):
            meta = endpoint_slice.get("metadata") or {}
            uid = str(meta.get("uid") or meta.get("name") or "")
            with self._guard:
                if uid in self._logged:
                    continue
                if len(self._logged) >= self.LIMIT:
                    self._logged.clear()
                self._logged.add(uid)
            labels = meta.get("labels") or {}
            logger.warning(
                "%s/%s: EndpointSlice %s is ignored: labelled %s=%s but not written by the EndpointSlice"
                " controller (%s=%r)",
                owner.namespace,
                owner.name,
                meta.get("name", "?"),
                SERVICE_NAME_LABEL,
                labels.get(SERVICE_NAME_LABEL, ""),
                SLICE_MANAGED_BY_LABEL,
                labels.get(SLICE_MANAGED_BY_LABEL),
            )


FOREIGN_SLICES = ForeignSlices()


def list_upstream(kube: Kube, owner: builders.Owner, source: Source, *, with_slices: bool) -> Upstream:
    """The config for the ready endpoints now, one list of the slices of NAME-backend (and of
    NAME-canary while a canary runs); with_slices=False (NAME-backend is not ours, so its slices are
    not our pods) renders the no-backend config without asking."""
    if not with_slices:
        text = render_nginx_conf(source.settings, [])
        return Upstream([], text, config_hash(text))
    names = [backend_name(owner)]
    if source.canary_weight is not None:
        names.append(canary_name(owner))
    slices = kube.list_objects("EndpointSlice", owner.namespace, _slice_selector(names))
    # ready_endpoints uses only the EndpointSlice controller's slices; the others are logged once.
    FOREIGN_SLICES.log_new(owner, slices)
    # With scale to zero, no ready copy means the activator's config, which holds requests until one
    # is ready: better than the stopping copies, whose listener closes at the end of their preStop
    # delay. A wake-up that comes while the copies put to sleep are still stopping would otherwise send
    # requests to them as their new copies start, and get 502 (seen in e2e 20's fifty cycles).
    serving_fallback = source.settings.scale_to_zero is None
    stable = ready_endpoints(
        _of_service(slices, names[0]), source.backend_port, serving_fallback=serving_fallback
    )
    split: Split | None = None
    canary: list[Endpoint] = []
    endpoints = stable
    if source.canary_weight is not None:
        canary = ready_endpoints(
            _of_service(slices, names[1]), source.backend_port, serving_fallback=serving_fallback
        )
        endpoints, split = weighted(stable, canary, source.canary_weight)
    if source.asleep:
        # Its copies may still be draining (ready or serving): new requests wait for the wake-up.
        endpoints, canary = [], []
    text = render_nginx_conf(source.settings, endpoints)
    return Upstream(endpoints, text, config_hash(text), slices, split, len(canary))


@dataclass(frozen=True)
class FastOutcome:
    """What sync_upstream did: written (a new text patched), unchanged, or not done (why)."""

    written: bool
    skipped: str = ""  # "no plan", "coalesced", or the refusal that made the plan useless
    upstream: Upstream | None = None
    owner: builders.Owner | None = None


def _fast_write(kube: Kube, key: Key, plan: Plan) -> FastOutcome:
    upstream = list_upstream(kube, plan.owner, plan.source, with_slices=True)
    if upstream.digest == plan.written_digest:
        return FastOutcome(written=False, upstream=upstream, owner=plan.owner)
    desired = builders.proxy_configmap(plan.owner, upstream.text, upstream.digest)
    # The uid makes the patch apply only to the ConfigMap the reconcile found to be ours: one that was
    # deleted and made again by someone else is refused (uid is immutable) instead of overwritten.
    desired["metadata"]["uid"] = plan.configmap_uid
    try:
        patched = kube.patch("ConfigMap", plan.owner.namespace, proxy_name(plan.owner), desired)
    except ApiError as error:
        UPSTREAMS.remember(key, None)
        return FastOutcome(written=False, skipped=error_message(error))
    if patched is None:  # gone: the full reconcile creates it again
        UPSTREAMS.remember(key, None)
        return FastOutcome(written=False, skipped="ConfigMap gone")
    CHILDREN.put(patched)
    UPSTREAMS.remember(key, _replace_digest(plan, upstream.digest))
    return FastOutcome(written=True, upstream=upstream, owner=plan.owner)


def _replace_digest(plan: Plan, digest: str) -> Plan:
    return Plan(plan.owner, plan.source, plan.configmap_uid, digest)


def sync_upstream(kube: Kube, namespace: str, name: str) -> FastOutcome:
    """The fast path: write NAME-proxy from the slices now, if the last reconcile left a plan.

    Errors without an answer from the API server (timeouts) raise; the caller's full reconcile, which
    follows every fast pass, is retried with backoff as always.
    """
    key = (namespace, name)
    if UPSTREAMS.plan(key) is None:
        return FastOutcome(written=False, skipped="no plan")
    if not UPSTREAMS.try_wait(key):
        return FastOutcome(written=False, skipped="coalesced")
    try:
        with UPSTREAMS.lock(key):
            UPSTREAMS.started(key)
            plan = UPSTREAMS.plan(key)  # the reconcile may have changed or dropped it meanwhile
            if plan is None:
                return FastOutcome(written=False, skipped="no plan")
            outcome = _fast_write(kube, key, plan)
    finally:
        UPSTREAMS.started(key)
    if outcome.written and outcome.upstream is not None:
        logger.info(
            "%s/%s: upstream now has %d ready endpoints (fast path)",
            namespace,
            name,
            len(outcome.upstream.endpoints),
        )
    return outcome


def under_lock(key: Key, work: Callable[[], T]) -> T:
    """Run the full reconcile's list-render-write of NAME-proxy under the fast path's lock."""
    with UPSTREAMS.lock(key):
        return work()
