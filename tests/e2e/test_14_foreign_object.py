"""Scenario 14: an object that already bears a child's name is never taken over or deleted.

A user's ConfigMap NAME-proxy (``keep: me``, no owner) exists before the ScaledApi: after create it is
unmodified, the ScaledApi is Degraded with reason NameConflict, naming the object and the way out, and
the other children exist (but the nginx Deployment, whose pods would read that ConfigMap, waits); after
``kubectl delete sapi`` (and the garbage collector removing the real children) it is still there. With
the adoption annotation the operator takes it over, and then it goes with the ScaledApi.
"""

from __future__ import annotations

import time
from typing import Any

from tests.e2e import figures, kube
from tests.e2e import scaledapi as sapi

ADOPT_ANNOTATION = "scaledapi.dev/adopt"
# The children the operator makes besides NAME-proxy (ConfigMap) for a ScaledApi of one replica; the
# nginx Deployment waits, because its pods would read the ConfigMap NAME-proxy.
OTHER_CHILDREN = (
    ("deployment", "{name}-backend"),
    ("service", "{name}-backend"),
    ("service", "{name}-proxy"),
    ("serviceaccount", "{name}-proxy"),
    ("role", "{name}-proxy"),
    ("rolebinding", "{name}-proxy"),
    ("configmap", "{name}-proxy-status"),
    ("networkpolicy", "{name}-backend"),
    ("networkpolicy", "{name}-proxy"),
)


def _users_configmap(ns: str, name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": f"{name}-proxy", "namespace": ns}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"keep": "me"}}


def _condition(ns: str, name: str, kind: str = "Degraded") -> dict[str, Any] | None:
    return kube.condition(sapi.get(ns, name), kind)


def _missing_children(ns: str, name: str) -> list[str]:
    return [
        f"{kind}/{pattern.format(name=name)}"
        for kind, pattern in OTHER_CHILDREN
        if kube.get_json(kind, pattern.format(name=name), ns) is None
    ]


def test_a_users_object_is_kept_unmodified_through_create_and_delete(namespace: str, name: str) -> None:
    kube.apply(_users_configmap(namespace, name))
    before = kube.get_json("configmap", f"{name}-proxy", namespace)
    assert before is not None

    started = time.monotonic()
    kube.apply(sapi.manifest(namespace, replicas=1, node_port=None))

    def name_conflict() -> dict[str, Any] | None:
        cond = _condition(namespace, name)
        if cond and cond.get("status") == "True" and cond.get("reason") == "NameConflict":
            return cond
        return None

    cond = kube.wait_for(
        name_conflict,
        60.0,
        0.5,
        what=f"{namespace}/{name} to report Degraded NameConflict",
        describe=lambda: sapi.describe(namespace, name),
    )
    conflict_after = time.monotonic() - started
    message = str(cond.get("message", ""))
    assert f"ConfigMap/{name}-proxy" in message, cond
    assert ADOPT_ANNOTATION in message and "delete or rename" in message, cond

    # Every other child is made all the same.
    kube.wait_for(
        lambda: not _missing_children(namespace, name),
        60.0,
        0.5,
        what="the other children to exist",
        describe=lambda: f"missing: {_missing_children(namespace, name)}",
    )
    assert kube.get_json("deployment", f"{name}-proxy", namespace) is None, "nginx pods would read it"
    after_create = kube.get_json("configmap", f"{name}-proxy", namespace)
    assert after_create is not None
    assert after_create["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"], (
        f"the user's ConfigMap was modified: {after_create}"
    )
    assert after_create.get("data") == {"keep": "me"}
    assert not after_create["metadata"].get("ownerReferences")

    # Delete the ScaledApi; the garbage collector removes its real children, never the user's object.
    sapi.delete_and_wait(namespace, name)
    kube.wait_for(
        lambda: kube.get_json("deployment", f"{name}-backend", namespace) is None
        and kube.get_json("configmap", f"{name}-proxy-status", namespace) is None,
        120.0,
        1.0,
        what="the garbage collector to delete the ScaledApi's own children",
    )
    after_delete = kube.get_json("configmap", f"{name}-proxy", namespace)
    assert after_delete is not None, "the user's ConfigMap was deleted with the ScaledApi"
    assert after_delete["metadata"]["uid"] == before["metadata"]["uid"]
    assert after_delete["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after_delete.get("data") == {"keep": "me"}
    figures.record("14 foreign object", "NameConflict after_s", round(conflict_after, 1))


def test_an_annotated_object_is_adopted_and_goes_with_the_scaledapi(namespace: str, name: str) -> None:
    kube.apply(_users_configmap(namespace, name, {ADOPT_ANNOTATION: "true"}))
    kube.apply(sapi.manifest(namespace, replicas=1, node_port=None))
    owner = kube.wait_for(lambda: sapi.get(namespace, name), 30.0, 0.5, what="the ScaledApi")
    uid = owner["metadata"]["uid"]

    def adopted() -> dict[str, Any] | None:
        cm = kube.get_json("configmap", f"{name}-proxy", namespace)
        refs = (cm or {}).get("metadata", {}).get("ownerReferences") or []
        if cm and any(r.get("uid") == uid and r.get("controller") for r in refs):
            return cm
        return None

    cm = kube.wait_for(
        adopted,
        60.0,
        0.5,
        what=f"configmap {name}-proxy to be adopted",
        describe=lambda: str(kube.get_json("configmap", f"{name}-proxy", namespace)),
    )
    assert kube.CONFIG_KEY in cm["data"]
    sapi.wait_config_applied(namespace, name, timeout=120.0)
    degraded = _condition(namespace, name)
    assert degraded is None or degraded.get("status") != "True", degraded

    sapi.delete_and_wait(namespace, name)
    kube.wait_for(
        lambda: kube.get_json("configmap", f"{name}-proxy", namespace) is None,
        120.0,
        1.0,
        what=f"the adopted configmap {name}-proxy to be deleted with its ScaledApi",
    )
