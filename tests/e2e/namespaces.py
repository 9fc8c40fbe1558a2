"""One namespace per scenario: Pod Security "restricted", labelled for cleanup, removed and waited for."""

from __future__ import annotations

import json
import re
import secrets

from tests.e2e import kube


class Scenario:
    """What a test created, so that a failure can show it: namespaces and ScaledApi names."""

    def __init__(self) -> None:
        self.namespaces: list[str] = []
        self.names: set[str] = set()


def _left(names: list[str]) -> list[kube.JSON]:
    listed = kube.list_json("namespaces", None, f"{kube.E2E_LABEL}=true")
    return [n for n in listed if n["metadata"]["name"] in names]


def _why_not_gone(names: list[str]) -> str:
    """The namespace controller's own reasons, for the timeout's message: e.g.
    NamespaceDeletionDiscoveryFailure, as long as an aggregated API such as metrics.k8s.io is unavailable
    (then no namespace that holds objects is finished)."""
    reasons = []
    for ns in _left(names):
        conditions = (ns.get("status") or {}).get("conditions") or []
        stuck = [f"{c['type']}: {c.get('message', '')}" for c in conditions if c.get("status") == "True"]
        reasons.append(f"{ns['metadata']['name']}: {'; '.join(stuck) or 'no condition set'}")
    return " | ".join(reasons)


def namespaces_gone(names: list[str], timeout: float) -> None:
    kube.wait_for(
        lambda: not _left(names),
        timeout,
        1.0,
        what=f"namespaces {', '.join(names)} to be gone",
        describe=lambda: _why_not_gone(names),
    )


class Namespaces:
    """Creates Pod Security "restricted" namespaces on demand and removes them (and waits) at the end."""

    def __init__(self, prefix: str, scenario: Scenario) -> None:
        self.prefix = prefix
        self.scenario = scenario

    def create(self, suffix: str = "") -> str:
        base = re.sub(r"[^a-z0-9-]+", "-", f"e2e-{self.prefix}{suffix}".lower()).strip("-")[:50]
        name = f"{base}-{secrets.token_hex(3)}"
        labels = {
            kube.E2E_LABEL: "true",
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
            "pod-security.kubernetes.io/warn": "restricted",
            "pod-security.kubernetes.io/warn-version": "latest",
            "pod-security.kubernetes.io/audit": "restricted",
            "pod-security.kubernetes.io/audit-version": "latest",
        }
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
        kube.kubectl("create", "-f", "-", input=json.dumps(namespace))
        self.scenario.namespaces.append(name)
        # Pods are refused until the namespace's default ServiceAccount exists.
        kube.wait_for(
            lambda: kube.get_json("serviceaccount", "default", name),
            30.0,
            0.2,
            what=f"serviceaccount {name}/default",
        )
        return name

    def cleanup(self) -> None:
        names = list(self.scenario.namespaces)
        if not names:
            return
        for ns in names:
            # ScaledApis first, so the operator sees its objects go while it still can.
            kube.kubectl("delete", "scaledapi", "--all", "-n", ns, "--wait=false", check=False)
        kube.kubectl("delete", "namespace", *names, "--wait=false", "--ignore-not-found")
        # Wait until gone, so that the node ports are free for the next scenario.
        namespaces_gone(names, 240.0)
