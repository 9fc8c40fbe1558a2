"""Scenario 5: deleting the ScaledApi removes every child; nothing is left in the namespace."""

from __future__ import annotations

import time
from typing import Any

from tests.e2e import figures, kube
from tests.e2e import scaledapi as sapi

# What a fresh namespace holds by itself (and events, which are a record, not a leftover).
BUILT_IN = {("ConfigMap", "kube-root-ca.crt"), ("ServiceAccount", "default")}
IGNORED_KINDS = {"Event"}


def _namespaced_kinds() -> str:
    names = kube.kubectl("api-resources", "--verbs=list", "--namespaced", "-o", "name").stdout.split()
    return ",".join(n for n in names if n not in ("events", "events.events.k8s.io"))


def _contents(ns: str, kinds: str) -> list[str]:
    items: list[dict[str, Any]] = kube.list_json(kinds, ns)
    return sorted(
        f"{o['kind']}/{o['metadata']['name']}"
        for o in items
        if o["kind"] not in IGNORED_KINDS and (o["kind"], o["metadata"]["name"]) not in BUILT_IN
    )


def test_delete_removes_every_child(namespace: str, name: str) -> None:
    kube.apply(sapi.manifest(namespace, replicas=2))
    sapi.wait_serving(namespace, name, 2)
    kinds = _namespaced_kinds()

    owner = sapi.get(namespace, name)
    assert owner is not None
    uid = owner["metadata"]["uid"]
    before = _contents(namespace, kinds)
    for expected in (
        f"Deployment/{name}-backend", f"Service/{name}-backend", f"PodDisruptionBudget/{name}-backend",
        f"ConfigMap/{name}-proxy", f"Deployment/{name}-proxy", f"Service/{name}-proxy",
        f"ServiceAccount/{name}-proxy", f"Role/{name}-proxy", f"RoleBinding/{name}-proxy",
        f"ConfigMap/{name}-proxy-status",
    ):  # fmt: skip
        assert expected in before, f"{expected} missing before the deletion; namespace holds {before}"
    for item in kube.list_json("deploy,svc,cm,pdb,sa,role,rolebinding,networkpolicy", namespace):
        if item["metadata"]["name"].startswith(name):
            refs = item["metadata"].get("ownerReferences", [])
            assert any(r.get("uid") == uid and r.get("controller") for r in refs), (
                f"{item['kind']}/{item['metadata']['name']} has no controller reference to its owner: {refs}"
            )

    started = time.monotonic()
    kube.kubectl("delete", "scaledapi", name, "-n", namespace, "--wait=false")
    kube.wait_for(
        lambda: not _contents(namespace, kinds) and sapi.get(namespace, name) is None,
        180.0,
        1.0,
        what=f"namespace {namespace} to be empty after deleting the ScaledApi",
        describe=lambda: f"left: {_contents(namespace, kinds)}",
    )
    figures.record("5 deletion", "everything gone after_s", round(time.monotonic() - started, 1))
    figures.record("5 deletion", "objects before", len(before))
