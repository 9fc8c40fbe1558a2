"""Scenario 10: the namespace enforces Pod Security "restricted", and everything still runs.

Every scenario's namespace enforces "restricted" (see namespaces.py); this one checks that the label is in
force and that the API server's own evaluation finds nothing: re-labelling the namespace (dry run) to
a pinned version of the policy makes it evaluate every existing pod and warn about any violation.
"""

from __future__ import annotations

import json

from tests.e2e import figures, kube
from tests.e2e import scaledapi as sapi


def test_restricted_namespace(namespace: str, name: str) -> None:
    ns = kube.get_json("namespace", namespace)
    assert ns is not None
    labels = ns["metadata"]["labels"]
    assert labels.get("pod-security.kubernetes.io/enforce") == "restricted", labels

    kube.apply(sapi.manifest(namespace, replicas=2))
    sapi.wait_serving(namespace, name, 2)
    proxies = kube.active_pods(namespace, name, "proxy")
    assert proxies and all(p.ready for p in proxies), f"nginx pods: {proxies}"

    # Nothing was refused on the way: no FailedCreate of a ReplicaSet because of Pod Security.
    refused = [
        e.get("message", "")
        for e in kube.list_json("events", namespace)
        if e.get("reason") == "FailedCreate" and "PodSecurity" in e.get("message", "")
    ]
    assert not refused, f"pods refused by Pod Security: {refused}"

    # The API server evaluates the existing pods when the enforce level or version changes.
    version = kube.kubectl_json("version")["serverVersion"]
    pinned = f"v{version['major']}.{version['minor'].rstrip('+')}"
    result = kube.kubectl(
        "label", "--dry-run=server", "--overwrite", "namespace", namespace,
        f"pod-security.kubernetes.io/enforce-version={pinned}",
    )  # fmt: skip
    assert "violate" not in result.stderr.lower(), f"existing pods violate restricted: {result.stderr}"

    pod_count = len(kube.pods(namespace, name)) + len(proxies)
    figures.record("10 pod security", "pods checked", pod_count)
    figures.record("10 pod security", "namespace labels", json.dumps(
        {k: v for k, v in labels.items() if k.startswith("pod-security")}, sort_keys=True
    ))  # fmt: skip
