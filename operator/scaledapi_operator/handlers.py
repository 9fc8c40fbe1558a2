"""Thin kopf handlers: every trigger ends in reconcile.reconcile_by_name for one ScaledApi.

Run with: kopf run --standalone --all-namespaces --liveness=http://0.0.0.0:8080/healthz \
    -m scaledapi_operator.handlers

* create / update (of .spec) / resume of a ScaledApi reconcile it.
* Events of any child (labelled managed-by=scaledapi-operator, filtered by the API server) reconcile
  the owning ScaledApi: drift is undone within seconds and EndpointSlice changes reach nginx at once.
  An event that only echoes what a pass read or wrote (seen.py) reconciles nothing.
* A resync every RESYNC_SECONDS reconciles the known ScaledApis (each one a handler was called for; at
  startup kopf resumes all) that no pass went through for as long, at most RESYNC_BATCH at a time, as a
  backstop, without listing ScaledApis cluster-wide, which the namespaced install does not allow. It is
  an operator-wide task and not a kopf timer, because kopf puts a finalizer on every object that has a
  timer or daemon, and a finalizer would hang deleting a ScaledApi whenever the operator is not running.
* A failed reconcile, whatever triggered it, is tried again after a growing delay (retry.RetryQueue:
  5 s doubling to 5 min, and the resync at least every RESYNC_SECONDS) by an operator-wide retry loop.
  The handlers never raise: kopf does not retry `@kopf.on.event` handlers at all, and a kopf handler
  that raises posts a Warning event on every retry. What failed is in the ScaledApi's status instead
  (Degraded, with the API server's message), posted as one event when the condition changes.

* Of the operator's replicas, only the holder of the Lease reconciles (leadership.py); a standby's
  handlers only note the ScaledApi, and the moment it becomes the leader it reconciles every one it
  knows, so that whatever changed while no one led is caught up at once.

No deletion handlers: the garbage collector deletes the children through their owner references.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import kopf

from scaledapi_operator import API_VERSION, GROUP, KIND, PLURAL, VERSION, metrics
from scaledapi_operator.builders.common import (
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    MANAGED_BY,
    Owner,
    backend_name_of,
    canary_name_of,
    proxy_status_name_of,
)
from scaledapi_operator.cache import CHILDREN
from scaledapi_operator.endpoints import SERVICE_NAME_LABEL, is_controller_slice
from scaledapi_operator.kube import KINDS, Kube
from scaledapi_operator.leadership import RETRY_SECONDS, Leadership
from scaledapi_operator.reconcile import BEGUN, LOCKS, Begun, Outcome, Poster, Skipped, reconcile_by_name
from scaledapi_operator.retry import RetryQueue
from scaledapi_operator.seen import RESUMED, SEEN, Trigger, child_event
from scaledapi_operator.settings import monitoring_namespace
from scaledapi_operator.status import Transition
from scaledapi_operator.upstream import sync_upstream
from scaledapi_operator.wake import wake

PREFIX = "scaledapi.dev"
RESYNC_SECONDS = 30.0
# At most this many ScaledApis per resync pass, those unreconciled for longest first: with a few hundred,
# each is still looked at every few minutes, and the backstop never floods the API server (at 1000 a full
# pass every 30 s would be ~17,000 requests).
RESYNC_BATCH = 100
HANDLER_THREADS = 12
# How often the retry loop looks for ScaledApis whose delay is over (the shortest delay is 5 s).
RETRY_TICK_SECONDS = 1.0
# Deadlines of kopf's own API requests (ours are kube.REQUEST_TIMEOUT_SECONDS): a short request, a
# connection, and a watch (asked of the server, and enforced by the client a little later).
KOPF_REQUEST_TIMEOUT_SECONDS = 30.0
KOPF_CONNECT_TIMEOUT_SECONDS = 10.0
# An integer: kopf sends it as the watch's timeoutSeconds, which the API server parses as an int
# ("300.0" is refused with 400 and no watch ever starts).
WATCH_SERVER_TIMEOUT_SECONDS = 300
WATCH_CLIENT_TIMEOUT_SECONDS = 330.0
MANAGED_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
# Where the Lease lives when the pod does not say (POD_NAMESPACE): the install's namespace.
DEFAULT_OPERATOR_NAMESPACE = "scaledapi-system"

# Every kind of child whose changes must reconcile the owner. EndpointSlices inherit the labels of
# their Service; pods those of their Deployment's template.
CHILD_KINDS = (
    "Deployment",
    "Service",
    "ConfigMap",
    "ServiceAccount",
    "Pod",
    "PodDisruptionBudget",
    "EndpointSlice",
    "Role",
    "RoleBinding",
    "NetworkPolicy",
)
# kopf names a resource (group, version, plural), or (version, plural) for the core group.
CHILD_RESOURCES: tuple[tuple[str, ...], ...] = tuple(
    (*KINDS[kind].api_version.split("/"), KINDS[kind].plural) for kind in CHILD_KINDS
)

logger = logging.getLogger(__name__)


class QuietChildSuccesses(logging.Filter):
    """Drops kopf's "Handler 'child-...' succeeded." lines.

    Child events arrive by the hundred while a ScaledApi scales; one success line (and one posted
    Event, since kopf posts its object logs) per pod or EndpointSlice change would drown everything
    else. Failures and our own reconcile logs still go through.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Handler 'child-") and message.endswith("succeeded."))


def kopf_post(body: Mapping[str, Any], transition: Transition) -> None:
    """Post through kopf's event queue (inside a handler's context only)."""
    kopf.event(
        cast(Any, dict(body)), type=transition.type, reason=transition.reason, message=transition.message
    )


def _kube(memo: Any) -> Kube:
    kube: Kube = memo.kube
    return kube


def _retries(memo: Any) -> RetryQueue:
    retries: RetryQueue = memo.retries
    return retries


def _leads(memo: Any) -> bool:
    """Whether this replica reconciles: it holds the Lease (always, without leader election)."""
    leadership: Leadership | None = memo.get("leadership")
    return leadership is None or leadership.leading


def direct_poster(kube: Kube) -> Poster:
    """Events posted straight through the API, for use outside of a kopf handler's context."""

    def post(body: Mapping[str, Any], transition: Transition) -> None:
        kube.post_event(dict(body), transition.type, transition.reason, transition.message)

    return post


def attempt(
    kube: Kube,
    retries: RetryQueue,
    namespace: str,
    name: str,
    post: Poster,
    trigger: Trigger | Begun = None,
    *,
    cause: str,
) -> Outcome | None:
    """Reconcile one ScaledApi and record the result for the retry loop and the metrics (`cause`: what
    asked for it); never raises.

    A pass in which the API server refused or failed a child (its status says which and why) or which
    could not finish at all is due again after the ScaledApi's next delay; a clean pass clears it.
    """
    key = (namespace, name)
    retries.seen(key)
    started = time.monotonic()
    try:
        outcome = reconcile_by_name(kube, namespace, name, post, trigger)
    except Exception:
        delay = retries.failed(key)
        metrics.reconciled(cause, "error", time.monotonic() - started)
        metrics.retrying(retries.failing())
        logger.exception("reconcile of %s/%s failed; next try in %.0f s", namespace, name, delay)
        return None
    if isinstance(outcome, Skipped):
        metrics.reconciled(cause, outcome.reason or "skipped")
        if outcome.gone:
            retries.gone(key)
            metrics.retrying(retries.failing())
        return None  # else another request for it is already waiting, and records its own result
    if outcome.failed:
        delay = retries.failed(key)
        metrics.reconciled(cause, "refused", time.monotonic() - started)
        refused = ", ".join(f"{item.kind}/{item.name}" for item in outcome.failed)
        logger.warning("%s/%s: not applied: %s; next try in %.0f s", namespace, name, refused, delay)
    else:
        retries.succeeded(key)
        metrics.reconciled(cause, "ok", time.monotonic() - started)
    metrics.retrying(retries.failing())
    return outcome


def apply_settings(settings: kopf.OperatorSettings) -> None:
    # The sync handlers' threads: a pass spends its time waiting on the API server, so more passes in
    # flight than cores (kopf's default is cores + 4, 6 here) is what lets 1000 ScaledApis converge.
    settings.execution.max_workers = HANDLER_THREADS
    # kopf keeps its bookkeeping in annotations, never in our strict status.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    settings.posting.enabled = True
    # kopf's own INFO lines ("Handler ... succeeded", "Creation is processed") go to the log only: as
    # Events they were two API writes per ScaledApi per pass. Our transitions are posted with
    # kopf.event (kopf_post), which this level does not filter; kopf's warnings and errors still are.
    settings.posting.level = logging.WARNING
    settings.peering.standalone = True
    # Every API call of kopf has a deadline, too; a watch that hangs is dropped and made again.
    settings.networking.request_timeout = KOPF_REQUEST_TIMEOUT_SECONDS
    settings.networking.connect_timeout = KOPF_CONNECT_TIMEOUT_SECONDS
    settings.watching.connect_timeout = KOPF_CONNECT_TIMEOUT_SECONDS
    settings.watching.server_timeout = WATCH_SERVER_TIMEOUT_SECONDS
    settings.watching.client_timeout = WATCH_CLIENT_TIMEOUT_SECONDS
    for resource in CHILD_RESOURCES:
        settings.watching.label_selectors[resource] = MANAGED_SELECTOR  # type: ignore[index]


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    apply_settings(settings)
    logging.getLogger("kopf.objects").addFilter(QuietChildSuccesses())
    # asyncio.to_thread's pool (passes started by child events, the fast path, the resync and retry
    # loops), the same size as kopf's own for the other handlers.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=HANDLER_THREADS, thread_name_prefix="scaledapi")
    )
    memo.kube = Kube()
    memo.retries = RetryQueue()
    memo.background = set()
    memo.leadership = Leadership(
        memo.kube,
        namespace=os.environ.get("POD_NAMESPACE") or DEFAULT_OPERATOR_NAMESPACE,
        identity=os.environ.get("POD_NAME") or socket.gethostname(),
    )
    # A bad value stops the operator here, naming the variable, not at each pass's NetworkPolicy.
    logger.info("nginx metrics may be scraped from namespace %s too", monitoring_namespace() or "(none)")
    port = metrics.port_from_environment()
    if port is not None:
        metrics.serve(port)
        logger.info("metrics on :%d/metrics", port)
    memo.lead = asyncio.create_task(_lead_forever(memo), name="scaledapi leadership")
    memo.resync = asyncio.create_task(_resync_forever(memo), name="scaledapi resync")
    memo.retry = asyncio.create_task(_retry_forever(memo), name="scaledapi retry")


@kopf.on.cleanup()
async def stop_resync(memo: kopf.Memo, **_: Any) -> None:
    for task in (memo.get("lead"), memo.get("resync"), memo.get("retry")):
        if isinstance(task, asyncio.Task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    leadership: Leadership | None = memo.get("leadership")
    if leadership is not None:
        # A graceful stop hands over at once: the standby takes the Lease at its next look.
        await asyncio.to_thread(leadership.release)


def resync_all(kube: Kube, retries: RetryQueue) -> None:
    """Reconcile every known ScaledApi once (each create, update, resume or child event made it known;
    at startup kopf resumes every existing one). No cluster-wide list: in the namespaced install the
    operator may read ScaledApis only in its namespaces. Events are posted directly (no kopf context)."""
    post = direct_poster(kube)
    for namespace, name in retries.known():
        attempt(kube, retries, namespace, name, post, cause="leader")


def resync_stale(kube: Kube, retries: RetryQueue) -> None:
    """The periodic backstop: reconcile the ScaledApis that no pass went through for RESYNC_SECONDS,
    at most RESYNC_BATCH of them, the longest waiting first."""
    post = direct_poster(kube)
    for namespace, name in retries.stale(RESYNC_SECONDS, RESYNC_BATCH):
        attempt(kube, retries, namespace, name, post, cause="resync")


def retry_due(kube: Kube, retries: RetryQueue) -> None:
    """Reconcile again every ScaledApi whose delay after a failure is over."""
    post = direct_poster(kube)
    for namespace, name in retries.take_due():
        attempt(kube, retries, namespace, name, post, cause="retry")


async def _lead_forever(memo: Any) -> None:
    # Operator-wide: one look at the Lease per period (a renewal, or a standby watching it age).
    leadership: Leadership = memo.leadership
    while True:
        try:
            became_leader = await asyncio.to_thread(leadership.step)
            metrics.leading(leadership.leading)
            if became_leader:
                # Just became the leader: catch up on whatever changed while no replica led.
                await asyncio.to_thread(resync_all, _kube(memo), _retries(memo))
        except Exception:
            logger.exception("leadership pass failed")
        await asyncio.sleep(RETRY_SECONDS)  # poll: the Lease's retry period


async def _resync_forever(memo: Any) -> None:
    # The period between passes of an operator-wide backstop loop, not a wait inside a handler.
    while True:
        await asyncio.sleep(RESYNC_SECONDS)  # poll: the resync period
        if not _leads(memo):
            continue
        try:
            await asyncio.to_thread(resync_stale, _kube(memo), _retries(memo))
        except Exception:
            logger.exception("resync failed")


async def _retry_forever(memo: Any) -> None:
    # Operator-wide, like the resync: looks for due retries; each ScaledApi's delay is in the queue.
    while True:
        await asyncio.sleep(RETRY_TICK_SECONDS)  # poll: the retry loop's tick
        if not _leads(memo):
            continue
        try:
            await asyncio.to_thread(retry_due, _kube(memo), _retries(memo))
        except Exception:
            logger.exception("retry pass failed")


def _handle(memo: Any, namespace: str | None, name: str, cause: str, trigger: Trigger = None) -> None:
    """Every handler's path: the leader reconciles, a standby only notes the ScaledApi for later."""
    if namespace is None:
        return
    if _leads(memo):
        attempt(_kube(memo), _retries(memo), namespace, name, kopf_post, trigger, cause=cause)
    else:
        _retries(memo).seen((namespace, name))


@kopf.on.create(GROUP, VERSION, PLURAL, id="reconcile-on-create")
def on_create(name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    _handle(memo, namespace, name, "create")


@kopf.on.update(GROUP, VERSION, PLURAL, id="reconcile-on-update", field="spec")
def on_update(name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    _handle(memo, namespace, name, "update")


@kopf.on.resume(GROUP, VERSION, PLURAL, id="reconcile-on-resume")
def on_resume(name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    # Explained once any pass finished since the start (a child's replayed event may come first).
    _handle(memo, namespace, name, "resume", RESUMED)


def owner_name(body: Mapping[str, Any]) -> str | None:
    """The ScaledApi a child belongs to: its controller owner reference, else its instance label."""
    meta = body.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if (
            ref.get("controller")
            and ref.get("kind") == KIND
            and str(ref.get("apiVersion", "")).startswith(GROUP)
        ):
            return str(ref["name"])
    labels = meta.get("labels") or {}
    if labels.get(LABEL_MANAGED_BY) == MANAGED_BY and labels.get(LABEL_INSTANCE):
        return str(labels[LABEL_INSTANCE])
    return None


async def on_child_event(
    body: kopf.Body, namespace: str | None, memo: Any, type: str | None = None, **_: Any
) -> None:
    """On the event loop: it holds no thread and keeps no body once it returns. At 1000 ScaledApis a
    restart replays some 13,000 children; queued for threads, their bodies took the operator past its
    memory limit. The cache takes the body first (the pass compares with it); see reconcile_later.
    A report of the nginx pods is the one exception that waits for a thread: it may be a wake-up,
    which patches the Deployments before the full pass (wake.py)."""
    CHILDREN.on_event(body, type)
    owner = owner_name(body)
    if namespace is not None and owner is not None:
        if _leads(memo) and is_proxy_reports(body, owner):
            await asyncio.to_thread(wake_path, _kube(memo), namespace, owner)
        reconcile_later(memo, namespace, owner, child_event(body, type), "child")


def is_proxy_reports(body: Mapping[str, Any], owner: str) -> bool:
    """Whether this is NAME-proxy-status, where the nginx pods say whether they are idle."""
    return body.get("kind") == "ConfigMap" and (body.get("metadata") or {}).get(
        "name"
    ) == proxy_status_name_of(owner)


def wake_path(kube: Kube, namespace: str, name: str) -> None:
    """wake.wake; never raises (the full reconcile that follows has the retries)."""
    try:
        wake(kube, namespace, name)
    except Exception:
        logger.exception("fast wake-up of %s/%s failed; the full reconcile follows", namespace, name)


def reconcile_later(memo: Any, namespace: str, owner: str, trigger: Trigger, cause: str) -> None:
    """An echo ends here, a request during a running pass is noted for it, and only a pass that starts
    gets a thread, in the background. kopf never retries an event handler: a failure is recorded and
    retried by the retry loop."""
    if not _leads(memo):
        _retries(memo).seen((namespace, owner))
        return
    if SEEN.explains((namespace, owner), trigger):
        metrics.reconciled(cause, "explained")
        return
    if not LOCKS.begin(namespace, owner, trigger):
        metrics.reconciled(cause, "coalesced")
        return
    post = direct_poster(_kube(memo))
    full = asyncio.to_thread(
        functools.partial(attempt, _kube(memo), _retries(memo), namespace, owner, post, BEGUN, cause=cause)
    )
    _keep(memo, asyncio.create_task(full, name=f"reconcile {namespace}/{owner}"))


def _keep(memo: Any, task: asyncio.Task[Any]) -> None:
    # The event loop holds only weak references to tasks: keep each until it is done.
    background: set[asyncio.Task[Any]] = memo.background
    background.add(task)
    task.add_done_callback(background.discard)


def is_backend_slice(body: Mapping[str, Any], owner: str) -> bool:
    """Whether this EndpointSlice is one of NAME-backend's or NAME-canary's (those of NAME-proxy feed
    no upstream), written by the EndpointSlice controller (one made by hand feeds none either)."""
    labels = (body.get("metadata") or {}).get("labels") or {}
    ours = labels.get(SERVICE_NAME_LABEL) in (backend_name_of(owner), canary_name_of(owner))
    return ours and is_controller_slice(body)


def fast_path(kube: Kube, namespace: str, name: str, post: Poster) -> None:
    """upstream.sync_upstream, and an event when it wrote a new upstream; never raises (the full
    reconcile that follows has the retries)."""
    try:
        fast = sync_upstream(kube, namespace, name)
    except Exception:
        logger.exception("fast upstream write of %s/%s failed; the full reconcile follows", namespace, name)
        return
    if fast.written and fast.upstream is not None and fast.owner is not None:
        metrics.config_written(namespace, name)
        message = f"nginx upstream now has {len(fast.upstream.endpoints)} ready endpoints"
        post(event_body(fast.owner), Transition("Normal", "ProxyConfigUpdated", message))


async def on_endpoint_slice_event(
    body: Mapping[str, Any], namespace: str | None, memo: Any, type: str | None = None, **_: Any
) -> None:
    """The fast path first (upstream.sync_upstream: the new upstream reaches nginx in two requests),
    then the full reconcile for the status, in the background: kopf handles the next event of this
    slice only once this handler returns, and the next change must not wait for a whole reconcile."""
    owner = owner_name(body)
    if namespace is None or owner is None:
        return
    trigger = child_event(body, type)
    # Not for a standby, nor for a slice the last pass listed as it is (nothing new for nginx).
    fresh = _leads(memo) and not SEEN.explains((namespace, owner), trigger)
    if fresh and is_backend_slice(body, owner):
        await asyncio.to_thread(fast_path, _kube(memo), namespace, owner, direct_poster(_kube(memo)))
    reconcile_later(memo, namespace, owner, trigger, "endpointslice")


def event_body(owner: Owner) -> dict[str, Any]:
    """Enough of a ScaledApi for an event about it (`kubectl describe` matches events by uid)."""
    meta = {"name": owner.name, "namespace": owner.namespace, "uid": owner.uid}
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": meta}


for _resource in CHILD_RESOURCES:
    kopf.on.event(
        *_resource,
        id=f"child-{_resource[-1]}",
        labels={LABEL_MANAGED_BY: MANAGED_BY},
    )(on_endpoint_slice_event if _resource[-1] == "endpointslices" else on_child_event)
