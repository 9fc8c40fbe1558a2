"""Scenario 13: changing spec.backend.port under a steady GET load loses no request.

While the rollout runs, old pods listen on the old port and new pods on the new one: the upstream takes
each pod's port from its EndpointSlice, and the backend Service targets the named port `http`.
"""

from __future__ import annotations

import time

from tests.e2e import figures, kube, traffic
from tests.e2e import scaledapi as sapi

OLD_PORT = 5252
NEW_PORT = 6000


def container_ports(ns: str, name: str) -> dict[str, int]:
    """Backend pod name -> its container's port, for the pods that are neither terminating nor deleted."""
    ports = {}
    for pod in kube.list_json("pods", ns, kube.backend_selector(name)):
        if pod["metadata"].get("deletionTimestamp"):
            continue
        ports[pod["metadata"]["name"]] = pod["spec"]["containers"][0]["ports"][0]["containerPort"]
    return ports


def test_port_change_under_load(namespace: str, name: str) -> None:
    kube.apply(sapi.manifest(namespace, replicas=2, backend={"port": OLD_PORT}))
    sapi.wait_serving(namespace, name, 2)
    sapi.wait_config_applied(namespace, name)

    with traffic.Load(rate=100, workers=8, max_seconds=300, max_requests=30_000) as load:
        kube.wait_for(lambda: load.sent >= 50, 30.0, 0.2, what="the load to start")
        changed_at = time.monotonic()
        kube.apply(sapi.manifest(namespace, replicas=2, backend={"port": NEW_PORT}))
        since: list[float] = []

        def moved() -> bool:
            """Only new-port pods, all ready, and the load's recent answers come from exactly them."""
            ports = container_ports(namespace, name)
            ready = {p.name for p in kube.pods(namespace, name) if p.ready and not p.terminating}
            if len(ports) != 2 or set(ports.values()) != {NEW_PORT} or set(ports) != ready:
                since.clear()
                return False
            if not since:
                since.append(time.monotonic())
            last = load.last(8)
            return len(last) == 8 and last[0].sent >= since[0] and {a.instance for a in last} == set(ports)

        kube.wait_for(
            moved,
            240.0,
            0.5,
            what=f"the backend to serve on port {NEW_PORT}",
            describe=lambda: f"{sapi.describe(namespace, name)}; ports {container_ports(namespace, name)}; "
            f"last: {[a.instance for a in load.last(8)]}; {load.summary()}",
        )
        moved_after = time.monotonic() - changed_at
        end_from = time.monotonic()
        kube.wait_for(lambda: sum(load.served_since(end_from).values()) >= 100, 30.0, 0.2)

    service = kube.kubectl_json("get", "service", f"{name}-backend", "-n", namespace)
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    summary = load.summary()
    figures.record("13 port change", "requests", summary)
    figures.record("13 port change", "port change to all new pods serving_s", round(moved_after, 1))
    failures = load.failures()
    assert not failures, f"{len(failures)} of {summary['sent']} requests failed:\n{load.describe_failures()}"
