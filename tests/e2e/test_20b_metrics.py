"""Scenario 20b: both metrics endpoints, scraped on the cluster. The nginx pods' per-copy request counts
must be what the client saw, answer by answer; the operator's leader must say it leads, and its gauges
must show the ScaledApi as it is."""

from __future__ import annotations

from collections import Counter

from tests.e2e import figures, kube, ports, prometheus, traffic
from tests.e2e import scaledapi as sapi

PROXY_METRICS_PORT = 9113
OPERATOR_METRICS_PORT = 9102
REQUESTS = 300
NODE_PORT = ports.SPARE
SCENARIO = "20b metrics"


def proxy_samples(ns: str, name: str) -> list[prometheus.Samples]:
    return [
        prometheus.scrape_pod(ns, p.name, PROXY_METRICS_PORT) for p in kube.active_pods(ns, name, "proxy")
    ]


def total(scrapes: list[prometheus.Samples], metric: str, **labels: str) -> float:
    return sum(prometheus.value(s, metric, **labels) for s in scrapes)


def test_per_copy_counts_match_the_client_and_the_operator_reports_the_scaledapi(
    namespace: str, name: str
) -> None:
    kube.apply(sapi.manifest(namespace, replicas=3, node_port=NODE_PORT))
    backends = sapi.wait_serving(namespace, name, 3, port=sapi.HOST_PORTS[NODE_PORT])
    sapi.wait_config_applied(namespace, name)
    port = int(sapi.load_sample()["spec"]["backend"].get("port", 5252))
    address = {p.name: f"{p.ip}:{port}" for p in backends}

    before = proxy_samples(namespace, name)
    seen = Counter(traffic.instances(sapi.HOST_PORTS[NODE_PORT], REQUESTS))
    assert set(seen) == set(address), f"answers from {set(seen)}, pods are {set(address)}"
    base = total(before, "scaledapi_proxy_requests_total", code="2xx")

    # The datagrams reach the reloader on their own: poll until every request is counted.
    after = kube.wait_for(
        lambda: (
            scrapes
            if total(scrapes := proxy_samples(namespace, name), "scaledapi_proxy_requests_total", code="2xx")
            >= base + REQUESTS
            else None
        ),
        timeout=30,
        describe=lambda: f"{REQUESTS} requests counted by the nginx pods' metrics",
    )
    metric = "scaledapi_proxy_upstream_responses_total"
    counted = {
        pod: total(after, metric, upstream=addr, code="2xx")
        - total(before, metric, upstream=addr, code="2xx")
        for pod, addr in address.items()
    }
    figures.record(SCENARIO, f"client saw, {REQUESTS} requests", dict(seen))
    figures.record(SCENARIO, "nginx metrics counted", counted)
    assert counted == {pod: float(n) for pod, n in seen.items()}, (counted, seen)
    assert total(after, "scaledapi_proxy_requests_total", code="2xx") - base == REQUESTS
    assert total(after, "scaledapi_proxy_requests_total", code="5xx") == 0
    assert all(prometheus.value(s, "scaledapi_proxy_nginx_up") == 1 for s in after)
    assert total(after, "scaledapi_proxy_config_applies_total", result="applied") >= 1
    assert total(after, "scaledapi_proxy_upstream_servers") == 3 * len(after)

    # The operator: one replica leads, and its gauges say what the ScaledApi's status says.
    leader = kube.operator_leader()
    operators = {
        p.name: prometheus.scrape_pod(kube.OPERATOR_NAMESPACE, p.name, OPERATOR_METRICS_PORT)
        for p in kube.operator_pods()
        if p.ready
    }
    leading = {pod for pod, s in operators.items() if prometheus.value(s, "scaledapi_operator_leader") == 1}
    assert leading == {leader}, f"leader gauge on {leading}, Lease held by {leader}"
    assert leader is not None
    ours = {"namespace": namespace, "scaledapi": name}

    def ready_replicas_reported() -> bool:
        fresh = prometheus.scrape_pod(kube.OPERATOR_NAMESPACE, leader, OPERATOR_METRICS_PORT)
        return prometheus.value(fresh, "scaledapi_ready_replicas", **ours) == 3

    kube.wait_for(
        ready_replicas_reported,
        timeout=30,
        describe=lambda: f"status: {(sapi.get(namespace, name) or {}).get('status')}",
    )
    samples = prometheus.scrape_pod(kube.OPERATOR_NAMESPACE, leader, OPERATOR_METRICS_PORT)
    assert prometheus.value(samples, "scaledapi_desired_replicas", **ours) == 3
    assert prometheus.value(samples, "scaledapi_condition", **ours, type="Ready") == 1
    assert prometheus.value(samples, "scaledapi_operator_proxy_config_writes_total", **ours) >= 1
    ok = sum(
        v
        for labels, v in prometheus.series(samples, "scaledapi_operator_reconciles_total").items()
        if ("result", "ok") in labels
    )
    assert ok >= 1
    figures.record(
        SCENARIO,
        "operator leader",
        {
            "reconciles ok": ok,
            "child writes": sum(prometheus.series(samples, "scaledapi_operator_child_writes_total").values()),
            "retrying": prometheus.value(samples, "scaledapi_operator_retrying"),
        },
    )
