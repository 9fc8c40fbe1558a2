"""Scenario 21: the operator off the single point of failure. Two replicas, one holding the Lease.

1. The leading pod force-deleted, then `kubectl scale` 2 -> 4 at once: the standby takes the Lease and
   every new copy is served within 15 s of Ready; the takeover rewrites nothing that was right.
2. The whole node of the leader stopped (`docker stop` of its kind node): the standby on the other
   worker takes over and a scale is served within 60 s. The requests that failed meanwhile (those that
   kube-proxy or nginx sent to pods on the lost node) are counted and reported; the node is started
   again afterwards and the cluster waited for.
"""

from __future__ import annotations

import time

import pytest

from tests.e2e import figures, kube, nodes, traffic
from tests.e2e import scaledapi as sapi

# Run alone, never beside other scenarios (hack/e2e.sh): kills the operator's leader and stops a node.
pytestmark = pytest.mark.serial

SCENARIO = "21 operator failover"
# What a takeover must not rewrite: everything the scale does not change.
STEADY_KINDS = "svc,sa,role,rolebinding,networkpolicy"
SERVED_AFTER_READY_S = 15.0
NODE_LOSS_SERVED_S = 60.0


def _leader_changed(old: str) -> str | None:
    leader = kube.operator_leader()
    return leader if leader not in (None, old) else None


def test_leader_pod_deleted_then_scaled(namespace: str, name: str) -> None:
    kube.wait_operator_ready()
    kube.apply(sapi.manifest(namespace, replicas=2))
    before = {p.name for p in sapi.wait_serving(namespace, name, 2)}
    sapi.wait_config_applied(namespace, name)
    steady = kube.resource_versions(namespace, name, STEADY_KINDS)
    proxy_deployment = kube.get_json("deployment", f"{name}-proxy", namespace)
    assert proxy_deployment is not None
    leader = kube.operator_leader()
    assert leader is not None, "no operator pod holds the Lease"

    with (
        sapi.PodWatcher(namespace, kube.backend_selector(name)) as watcher,
        traffic.Load(rate=100, workers=4, max_seconds=300) as probe,
    ):
        t0 = time.monotonic()
        kube.kubectl(
            "delete",
            "pod",
            leader,
            "-n",
            kube.OPERATOR_NAMESPACE,
            "--force",
            "--grace-period=0",
            "--wait=false",
        )
        sapi.scale(namespace, name, 4)
        new_leader = kube.wait_for(
            lambda: _leader_changed(leader),
            60.0,
            0.2,
            what=f"another operator pod to take the Lease from {leader}",
        )
        takeover_s = time.monotonic() - t0

        def new_copies_answered() -> list[str] | None:
            active = kube.active_pods(namespace, name)
            answered, ready = probe.first_answers(), watcher.first_ready()
            new = [p.name for p in active if p.name not in before]
            if len(active) == 4 and all(p in answered and p in ready for p in new):
                return new
            return None

        new = kube.wait_for(
            new_copies_answered,
            120.0,
            0.5,
            what="both new copies to answer",
            describe=lambda: f"{sapi.describe(namespace, name)}; answered: {sorted(probe.first_answers())}",
        )
        answered, ready = probe.first_answers(), watcher.first_ready()
    ready_to_served = [answered[p] - ready[p] for p in new]
    figures.record(SCENARIO, "leader pod deleted: Lease taken over after_s", round(takeover_s, 1))
    figures.record(
        SCENARIO, "leader pod deleted, scale 2->4: Ready to served", figures.stats(ready_to_served)
    )
    figures.record(SCENARIO, "leader pod deleted: requests", probe.summary())
    assert max(ready_to_served) <= SERVED_AFTER_READY_S, ready_to_served
    assert not probe.failures(), probe.describe_failures()
    # The new leader rewrote nothing that was right (its first pass compares, it does not write).
    assert kube.resource_versions(namespace, name, STEADY_KINDS) == steady
    after = kube.get_json("deployment", f"{name}-proxy", namespace)
    assert after is not None and after["metadata"]["generation"] == proxy_deployment["metadata"]["generation"]
    figures.record(SCENARIO, "new leader", new_leader)
    kube.wait_operator_ready()


def test_leader_node_stopped_then_scaled(namespace: str, name: str) -> None:
    workers = nodes.workers()
    kube.wait_operator_ready()
    operators = {p.name: p.node for p in kube.operator_pods()}
    leader = kube.operator_leader()
    assert leader in operators, f"no operator pod holds the Lease: {leader}, pods {operators}"
    lost = operators[leader]
    assert lost in workers, f"the leader {leader} runs on {lost}, not on a worker"
    standbys = [pod for pod, node in operators.items() if node != lost]
    assert standbys, f"both operator replicas run on {lost}: the spread constraint did not place them apart"

    kube.apply(sapi.manifest(namespace, replicas=4, proxy={"replicas": 2}))
    sapi.wait_serving(namespace, name, 4)
    before = {p.name for p in kube.pods(namespace, name)}
    try:
        with traffic.Load(rate=100, workers=8, max_seconds=400, max_requests=40_000) as load:
            kube.wait_for(lambda: load.sent >= 100, 30.0, 0.2, what="the load to start")
            t0 = time.monotonic()
            nodes.docker("stop", lost)
            new_leader = kube.wait_for(
                lambda: _leader_changed(leader), 90.0, 0.5, what=f"a standby to take the Lease from {leader}"
            )
            takeover_s = time.monotonic() - t0
            t_scale = time.monotonic()
            sapi.scale(namespace, name, 6)

            def a_new_copy_served() -> list[str] | None:
                served = [p for p in load.served_since(t_scale) if p not in before]
                return served or None

            served = kube.wait_for(
                a_new_copy_served,
                NODE_LOSS_SERVED_S,
                0.5,
                what="a new copy to be served after the scale",
                describe=lambda: f"{sapi.describe(namespace, name)}; {load.summary()}",
            )
            scale_served_s = time.monotonic() - t_scale
            # Until the node is marked NotReady (the node monitor's grace period), kube-proxy still sends
            # a share of the connections to the nginx pod there: those clients wait out their timeout.
            since = load.sent
            kube.wait_for(lambda: load.sent >= since + 100, 120.0, 0.2, what="100 more requests")
    finally:
        nodes.docker("start", lost, check=False)
        kube.wait_for(lambda: nodes.node_ready(lost), 240.0, 2.0, what=f"node {lost} to be Ready again")
    summary = load.summary()
    figures.record(
        SCENARIO, "leader node stopped", {"node": lost, "old leader": leader, "new leader": new_leader}
    )
    figures.record(SCENARIO, "leader node stopped: Lease taken over after_s", round(takeover_s, 1))
    figures.record(
        SCENARIO, "leader node stopped: scale 4->6, first new copy served after_s", round(scale_served_s, 1)
    )
    figures.record(SCENARIO, "leader node stopped: new copies served", len(served))
    figures.record(
        SCENARIO, "leader node stopped: requests (failures are those sent to the lost node)", summary
    )
    assert new_leader in standbys, f"{new_leader} took the Lease; standbys were {standbys}"
    kube.wait_operator_ready(timeout=300.0)
