"""Thin kopf handlers: every trigger ends in reconcile.reconcile_by_name for one ScaledApi.

Run with: kopf run --standalone --all-namespaces --liveness=http://0.0.0.0:8080/healthz \
    -m scaledapi_operator.handlers

* create / update (of .spec) / resume of a ScaledApi reconcile it; a failure is retried by kopf.
* Events of any child (labelled managed-by=scaledapi-operator, filtered by the API server) reconcile
  the owning ScaledApi: drift is undone within seconds and EndpointSlice changes reach nginx at once.
* A resync every RESYNC_SECONDS reconciles every ScaledApi as a backstop. It is an operator-wide task
  and not a kopf timer, because kopf puts a finalizer on every object that has a timer or daemon,
  and a finalizer would hang deleting a ScaledApi whenever the operator is not running.

No deletion handlers: the garbage collector deletes the children through their owner references.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any, cast

import kopf

from scaledapi_operator import GROUP, KIND, PLURAL, VERSION
from scaledapi_operator.builders.common import LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGED_BY
from scaledapi_operator.kube import KINDS, Kube, load_config
from scaledapi_operator.reconcile import reconcile_by_name
from scaledapi_operator.status import Transition

PREFIX = "scaledapi.dev"
RESYNC_SECONDS = 30.0
RETRY_BACKOFF_SECONDS = 5.0
MANAGED_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"

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


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # kopf keeps its bookkeeping in annotations, never in our strict status.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    settings.posting.enabled = True
    settings.posting.level = logging.INFO
    settings.peering.standalone = True
    logging.getLogger("kopf.objects").addFilter(QuietChildSuccesses())
    for resource in CHILD_RESOURCES:
        settings.watching.label_selectors[resource] = MANAGED_SELECTOR  # type: ignore[index]
    load_config()
    memo.kube = Kube()
    memo.resync = asyncio.create_task(_resync_forever(memo.kube), name="scaledapi resync")


@kopf.on.cleanup()
async def stop_resync(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("resync")
    if isinstance(task, asyncio.Task):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def resync_all(kube: Kube) -> None:
    """Reconcile every ScaledApi once; events are posted directly (no kopf handler context here)."""

    def post(body: Mapping[str, Any], transition: Transition) -> None:
        kube.post_event(dict(body), transition.type, transition.reason, transition.message)

    for item in kube.list_scaledapis():
        meta = item["metadata"]
        try:
            reconcile_by_name(kube, meta["namespace"], meta["name"], post)
        except Exception:
            logger.exception("resync of %s/%s failed", meta["namespace"], meta["name"])


async def _resync_forever(kube: Kube) -> None:
    # The period between passes of an operator-wide backstop loop, not a wait inside a handler.
    while True:
        await asyncio.sleep(RESYNC_SECONDS)  # poll: the resync period
        try:
            await asyncio.to_thread(resync_all, kube)
        except Exception:
            logger.exception("resync failed")


@kopf.on.create(GROUP, VERSION, PLURAL, id="reconcile-on-create", backoff=RETRY_BACKOFF_SECONDS)
def on_create(name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    if namespace is not None:
        reconcile_by_name(_kube(memo), namespace, name, kopf_post)


@kopf.on.update(GROUP, VERSION, PLURAL, id="reconcile-on-update", field="spec", backoff=RETRY_BACKOFF_SECONDS)
def on_update(name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    if namespace is not None:
        reconcile_by_name(_kube(memo), namespace, name, kopf_post)


@kopf.on.resume(GROUP, VERSION, PLURAL, id="reconcile-on-resume", backoff=RETRY_BACKOFF_SECONDS)
def on_resume(name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    if namespace is not None:
        reconcile_by_name(_kube(memo), namespace, name, kopf_post)


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


def on_child_event(body: kopf.Body, namespace: str | None, memo: Any, **_: Any) -> None:
    owner = owner_name(body)
    if owner is None or namespace is None:
        return
    reconcile_by_name(_kube(memo), namespace, owner, kopf_post)


for _resource in CHILD_RESOURCES:
    kopf.on.event(
        *_resource,
        id=f"child-{_resource[-1]}",
        labels={LABEL_MANAGED_BY: MANAGED_BY},
    )(on_child_event)
