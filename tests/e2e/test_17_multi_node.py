"""Scenario 17: on several nodes. Pods spread, traffic crosses nodes in exact round robin, and a proxy
rolling restart and a node drain under a steady client lose no request.

The cluster is kind-config-multinode.yaml: a control plane and two workers, pod networking by the
air-gapped CNI (hack/airgap/kindnetd), host port 8080 on the control-plane node.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from tests.e2e import figures, kube, nodes, ports, traffic
from tests.e2e import scaledapi as sapi

# Run alone, never beside other scenarios (hack/e2e.sh): drains a node and rolls proxies: every scenario's
# pods on it would move.
pytestmark = pytest.mark.serial

SCENARIO = "17 multi-node"
RATE = 100.0


def _by_node(pods: list[kube.PodState]) -> dict[str, int]:
    return dict(Counter(p.node for p in pods))


def _settle(load: traffic.Load, namespace: str, name: str, replicas: int, component: str = "backend") -> None:
    """`replicas` pods of the component Ready, none terminating, and the load's latest answers from them."""

    def settled() -> bool:
        current = kube.pods(namespace, name, component)
        if len(current) != replicas or not all(p.ready and not p.terminating for p in current):
            return False
        if component != "backend":
            return True
        recent = load.last(4 * replicas)
        backends = {p.name for p in current}
        return len(recent) == 4 * replicas and {a.instance for a in recent} == backends

    kube.wait_for(
        settled,
        300.0,
        0.5,
        what=f"{replicas} {component} pods settled under the load",
        describe=lambda: f"{sapi.describe(namespace, name)}; {load.summary()}",
    )


def test_pods_spread_and_round_robin_crosses_nodes(namespace: str, name: str) -> None:
    workers = nodes.workers()
    kube.apply(sapi.manifest(namespace, replicas=4))
    ready = sapi.wait_serving(namespace, name, 4)
    sapi.wait_config_applied(namespace, name)
    spread = _by_node(ready)
    assert set(spread) == set(workers) and sorted(spread.values()) == [2, 2], spread
    (proxy,) = kube.pods(namespace, name, "proxy")

    # k*m sequential requests through one nginx: each of the k copies exactly m times, on both workers.
    order = traffic.instances(traffic.DEFAULT_PORT, 4 * 5)
    counts = Counter(order)
    assert dict(counts) == {p.name: 5 for p in ready}, counts

    # The node port from every node (kube-proxy forwards to the nginx pod wherever it runs), and the
    # backend's ClusterIP from every node (to pods on both workers).
    service = kube.get_json("service", f"{name}-backend", namespace)
    assert service is not None
    cluster_ip = service["spec"]["clusterIP"]
    reached: dict[str, list[str]] = {}
    for node in nodes.all_nodes():
        answers = []
        for url in (f"http://127.0.0.1:{ports.MAIN}/api/hello", f"http://{cluster_ip}:5252/api/hello"):
            result = nodes.on_node(node, "curl", "-fsS", "--max-time", "5", url)
            assert result.returncode == 0, f"{url} from node {node}: {result.stderr}"
            answers.append(json.loads(result.stdout)["instance"])
        reached[node] = answers
    figures.record(SCENARIO, "backends per node", spread)
    figures.record(SCENARIO, "nginx node", proxy.node)
    figures.record(SCENARIO, "round robin, 4 copies on 2 workers, 20 requests", dict(counts))
    figures.record(SCENARIO, "node port and ClusterIP answered from every node", reached)


def test_proxy_rolling_restart_loses_nothing(namespace: str, name: str) -> None:
    kube.apply(sapi.manifest(namespace, replicas=2, proxy={"replicas": 2}))
    sapi.wait_serving(namespace, name, 2)
    kube.wait_for(
        lambda: len({p.node for p in kube.pods(namespace, name, "proxy") if p.ready}) == 2,
        120.0,
        0.5,
        what="two ready nginx pods on two nodes",
        describe=lambda: sapi.describe(namespace, name),
    )
    before = {p.name for p in kube.pods(namespace, name, "proxy")}
    with traffic.Load(rate=RATE, workers=8, max_seconds=300, max_requests=30_000) as load:
        kube.wait_for(lambda: load.sent >= 100, 30.0, 0.2, what="the load to start")
        started = time.monotonic()
        kube.kubectl("rollout", "restart", f"deployment/{name}-proxy", "-n", namespace)
        kube.kubectl(
            "rollout", "status", f"deployment/{name}-proxy", "-n", namespace, "--timeout=240s", timeout=260
        )

        def replaced() -> bool:
            current = kube.pods(namespace, name, "proxy")
            return len(current) == 2 and not {p.name for p in current} & before

        kube.wait_for(replaced, 120.0, 0.5, what="the old nginx pods to be gone")
        rolled = time.monotonic() - started
        since = load.sent
        kube.wait_for(lambda: load.sent >= since + 200, 30.0, 0.2, what="200 more requests")
    summary = load.summary()
    figures.record(SCENARIO, "proxy rolling restart, 2 nginx pods, under load", summary)
    figures.record(SCENARIO, "proxy rolling restart took_s", round(rolled, 1))
    failures = load.failures()
    assert not failures, f"{len(failures)} of {summary['sent']} requests failed:\n{load.describe_failures()}"
    assert summary["rate_per_second"] >= RATE * 0.9, summary


def test_drain_and_uncordon_lose_nothing(namespace: str, name: str) -> None:
    workers = nodes.workers()
    kube.apply(sapi.manifest(namespace, replicas=4, proxy={"replicas": 2}))
    sapi.wait_serving(namespace, name, 4)
    proxies = kube.pods(namespace, name, "proxy")
    backends = kube.pods(namespace, name)
    # The worker that holds a proxy pod and the most backend pods.
    drained = max(
        (w for w in workers if any(p.node == w for p in proxies)),
        key=lambda w: sum(p.node == w for p in backends),
    )
    other = next(w for w in workers if w != drained)
    before = {"backends": _by_node(backends), "proxies": _by_node(proxies)}
    try:
        with traffic.Load(rate=RATE, workers=8, max_seconds=480, max_requests=50_000) as load:
            kube.wait_for(lambda: load.sent >= 100, 30.0, 0.2, what="the load to start")
            started = time.monotonic()
            # --force: the suite's metrics scraper (prometheus.scraper, in `monitoring`) is a bare pod, and
            # drain refuses a node that holds one without it (CI failed so once). Drain deletes it; the
            # next scrape makes it again. Every pod of the ScaledApi has a controller.
            kube.kubectl(
                "drain",
                drained,
                "--ignore-daemonsets",
                "--delete-emptydir-data",
                "--force",
                "--timeout=240s",
                timeout=260,
            )
            drain_s = time.monotonic() - started
            _settle(load, namespace, name, 4)
            _settle(load, namespace, name, 2, component="proxy")
            during = {
                "backends": _by_node(kube.pods(namespace, name)),
                "proxies": _by_node(kube.pods(namespace, name, "proxy")),
            }
            assert set(during["backends"]) == {other} and set(during["proxies"]) == {other}, during

            kube.kubectl("uncordon", drained)
            # New copies go to the emptier node (the spread constraint); the old ones stay where they are.
            sapi.scale(namespace, name, 6)
            _settle(load, namespace, name, 6)
            since = load.sent
            kube.wait_for(lambda: load.sent >= since + 200, 30.0, 0.2, what="200 more requests")
    finally:
        kube.kubectl("uncordon", drained, check=False)
    after = kube.pods(namespace, name)
    assert set(_by_node(after)) == set(workers), _by_node(after)
    # Every ready backend on both workers answers, and nothing else (over a few rounds, two nginx pods).
    sapi.wait_serving(namespace, name, 6, timeout=60.0)
    summary = load.summary()
    figures.record(SCENARIO, "drain: pods per node before", before)
    figures.record(SCENARIO, "drain: pods per node while drained", during)
    figures.record(SCENARIO, "drain: backends per node after uncordon and scale to 6", _by_node(after))
    figures.record(SCENARIO, f"drain of {drained} took_s", round(drain_s, 1))
    figures.record(SCENARIO, "drain and uncordon under load", summary)
    failures = load.failures()
    assert not failures, f"{len(failures)} of {summary['sent']} requests failed:\n{load.describe_failures()}"


def _selected(namespace: str, match_labels: dict[str, str]) -> set[str]:
    selector = ",".join(f"{key}={value}" for key, value in sorted(match_labels.items()))
    return {pod["metadata"]["name"] for pod in kube.list_json("pods", namespace, selector)}


def test_network_policies_select_the_real_pods(namespace: str, name: str) -> None:
    """The API server accepts both policies and their selectors pick exactly the right pods and port.

    Not proven here: that they are enforced. The air-gapped CNI (hack/airgap/kindnetd) implements no
    NetworkPolicy, so a pod that calls a backend directly still reaches it on this cluster.
    """
    kube.apply(sapi.manifest(namespace, replicas=2, proxy={"replicas": 2}))
    sapi.wait_serving(namespace, name, 2)
    backends = {p.name for p in kube.pods(namespace, name)}
    proxies = {p.name for p in kube.pods(namespace, name, "proxy")}
    backend_policy = kube.get_json("networkpolicy", f"{name}-backend", namespace)
    proxy_policy = kube.get_json("networkpolicy", f"{name}-proxy", namespace)
    assert backend_policy is not None and proxy_policy is not None

    spec = backend_policy["spec"]
    assert _selected(namespace, spec["podSelector"]["matchLabels"]) == backends
    (rule,) = spec["ingress"]
    (source,) = rule["from"]
    assert _selected(namespace, source["podSelector"]["matchLabels"]) == proxies
    (port,) = rule["ports"]
    deployment = kube.get_json("deployment", f"{name}-backend", namespace)
    assert deployment is not None
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert port["port"] in {p["name"] for p in container["ports"]}, (port, container["ports"])

    spec = proxy_policy["spec"]
    assert _selected(namespace, spec["podSelector"]["matchLabels"]) == proxies
    rule, metrics = spec["ingress"]
    assert "from" not in rule, "the proxy must accept from anywhere"
    nginx = kube.get_json("deployment", f"{name}-proxy", namespace)
    assert nginx is not None
    (container,) = nginx["spec"]["template"]["spec"]["containers"]
    assert rule["ports"][0]["port"] in {p["name"] for p in container["ports"]}
    # Its metrics port: only the pods of its own namespace and of the monitoring namespace.
    assert metrics["from"] == [
        {"podSelector": {}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
    ]
    assert metrics["ports"][0]["port"] in {p["name"] for p in container["ports"]}
    # Probes and traffic through nginx still work with the policies in place.
    sapi.wait_serving(namespace, name, 2)
    figures.record(
        SCENARIO, "network policies: backends selected, proxies allowed", [len(backends), len(proxies)]
    )
