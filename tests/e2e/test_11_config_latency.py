"""Measure: the time from a change of ConfigMap NAME-proxy to nginx serving the new upstream set.

With the operator scaled to 0 (so that it does not undo the hand edits), the ConfigMap's ``nginx.conf``
is patched over and over with the upstream rewritten to a different subset of the 3 ready backend pods.
t0 is taken just before the patch (sent with the Python client, so that no kubectl start-up is counted);
t1 is the answer that starts a run of consecutive answers only from the new subset, with every member of
it seen. The operator is scaled back and the original config restored in any case.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import statistics
import time
from typing import Any

import pytest
from kubernetes import client, config

from tests.e2e import figures, kube, traffic
from tests.e2e import scaledapi as sapi

# Run alone, never beside other scenarios (hack/e2e.sh): a latency measure: concurrent scenarios would load
# the cluster it times.
pytestmark = pytest.mark.serial

CHANGES = 12
# The upstream block of scaledapi_operator.nginx_conf: "upstream scaledapi_backend {" ... "}".
UPSTREAM = re.compile(
    r"(?ms)^(?P<head>[ \t]*upstream[ \t]+\S+[ \t]*\{[ \t]*\n)(?P<body>.*?)(?P<tail>^[ \t]*\})"
)
SERVER = re.compile(r"^(?P<indent>[ \t]*)server[ \t]+(?P<address>\S+?)(?P<params>(?:[ \t][^;]*)?);[ \t]*$")


def rewrite_upstream(text: str, addresses: list[str]) -> str:
    """``text`` with the upstream's ``server`` lines replaced by one per address (same parameters)."""
    match = UPSTREAM.search(text)
    assert match, f"no upstream block in the config:\n{text}"
    lines = match.group("body").splitlines(keepends=True)
    servers = [i for i, line in enumerate(lines) if SERVER.match(line.rstrip("\n"))]
    assert servers, f"no server line in the upstream:\n{match.group('body')}"
    template = SERVER.match(lines[servers[0]].rstrip("\n"))
    assert template is not None
    new_servers = [
        f"{template.group('indent')}server {address}{template.group('params')};\n" for address in addresses
    ]
    body = (
        lines[: servers[0]]
        + new_servers
        + [line for i, line in enumerate(lines) if i > servers[0] and i not in servers]
    )
    text = text[: match.start("body")] + "".join(body) + text[match.end("body") :]
    return re.sub(r"(?m)^# Ready endpoints: \d+$", f"# Ready endpoints: {len(addresses)}", text)


def subsets(names: list[str]) -> list[tuple[str, ...]]:
    """Proper non-empty subsets, ordered so that consecutive ones differ and the first differs from all."""
    order = [
        (names[0],),
        (names[1], names[2]),
        (names[1],),
        (names[0], names[2]),
        (names[2],),
        (names[0], names[1]),
    ]
    return list(itertools.islice(itertools.cycle(order), CHANGES))


def serving_only(subset: set[str], after: float, deadline_s: float = 30.0) -> float:
    """Poll until a run of consecutive answers comes only from ``subset`` with every member seen
    (2 full rounds, at least 4 answers); return the time the first answer of that run was received."""
    needed = max(4, 2 * len(subset))
    run: list[traffic.Answer] = []
    end = time.monotonic() + deadline_s
    recent: list[str | None] = []
    while time.monotonic() < end:
        answer = traffic.hello()
        recent = [*recent[-11:], answer.instance or answer.error]
        if answer.instance in subset:
            run.append(answer)
        else:
            run = []
        if len(run) >= needed and {a.instance for a in run} == subset:
            return max(run[0].received, after)
    raise AssertionError(
        f"nginx did not switch to {sorted(subset)} within {deadline_s} s; last answers: {recent}"
    )


def test_configmap_change_to_serving(namespace: str, name: str) -> None:
    kube.apply(sapi.manifest(namespace, replicas=3))
    ready = sapi.wait_serving(namespace, name, 3)
    sapi.wait_config_applied(namespace, name)
    cm_name = f"{name}-proxy"
    cm = kube.get_json("configmap", cm_name, namespace)
    assert cm is not None
    original = cm["data"][kube.CONFIG_KEY]
    # The Service targets the named port "http"; nginx uses the number each pod's slice carries.
    deployment = kube.get_json("deployment", f"{name}-backend", namespace)
    assert deployment is not None
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    backend_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "http")
    address = {p.name: f"{p.ip}:{backend_port}" for p in ready}
    for p in ready:
        assert address[p.name] in original, f"{address[p.name]} of {p.name} is not in the config:\n{original}"

    config.load_kube_config(context=kube.CONTEXT)  # type: ignore[no-untyped-call]
    core: Any = client.CoreV1Api()
    operator = kube.operator_deployment_name()
    durations: list[float] = []
    try:
        kube.kubectl("scale", f"deployment/{operator}", "-n", kube.OPERATOR_NAMESPACE, "--replicas=0")
        kube.wait_for(lambda: not kube.operator_pods(), 120.0, 0.5, what="the operator pods to be gone")

        for subset in subsets(sorted(address)):
            text = rewrite_upstream(original, sorted(address[n] for n in subset))
            body = {
                "metadata": {"annotations": {kube.CONFIG_HASH_ANNOTATION: _hash(text)}},
                "data": {kube.CONFIG_KEY: text},
            }
            t0 = time.monotonic()
            core.patch_namespaced_config_map(cm_name, namespace, body)
            t1 = serving_only(set(subset), t0)
            durations.append(t1 - t0)
    finally:
        replicas = f"--replicas={kube.operator_manifest_replicas()}"
        kube.kubectl("scale", f"deployment/{operator}", "-n", kube.OPERATOR_NAMESPACE, replicas)
        kube.wait_operator_ready()
        kube.wait_for(
            lambda: (kube.get_json("configmap", cm_name, namespace) or {})
            .get("data", {})
            .get(kube.CONFIG_KEY)
            == original,
            120.0,
            0.5,
            what=f"the operator to restore configmap {cm_name}",
        )
    sapi.wait_serving(namespace, name, 3)

    stats = figures.stats(durations)
    figures.record("11 configmap change to serving", "changes", stats)
    print(f"ConfigMap change -> nginx serving: {json.dumps(stats)}")
    assert len(durations) >= 10
    assert statistics.median(durations) < 30.0


def _hash(text: str) -> str:
    """scaledapi.dev/config-hash of a text: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
