"""Scenario 10b: who may connect to what. nginx's port answers anyone; its metrics port only the pods of
its own namespace and of the monitoring namespace; the backend only nginx; the operator only on its
metrics port, from its own namespace and the monitoring namespace.

Enforcement is the CNI's. kind's kindnet (v0.24 and later) enforces NetworkPolicies: there every refusal
is asserted. The air-gapped stand-in (hack/airgap/kindnetd) enforces none: there a refusal cannot be
seen, so the scenario asserts what must be admitted and records that nothing was enforced (known by the
backend, which only nginx may reach, answering a pod of another namespace).
"""

from __future__ import annotations

from tests.e2e import figures, kube, prometheus
from tests.e2e import scaledapi as sapi
from tests.e2e.namespaces import Namespaces

SCENARIO = "10b network policies"
NGINX_PORT = 8080
NGINX_METRICS_PORT = 9113
OPERATOR_HEALTH_PORT = 8080
OPERATOR_METRICS_PORT = 9102
# Long enough for an admitted request on a loaded node; a refused one (dropped) takes all of it.
TIMEOUT = 5.0


# Any HTTP answer counts (an error status too): what is checked is whether the connection is admitted.
_CONNECT = (
    "import sys, urllib.error, urllib.request\n"
    "try:\n    urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2]))\n"
    "except urllib.error.HTTPError:\n    pass\n"
)


def answers(ns: str, client: str, address: str) -> bool:
    """Whether `address` answers the client pod `client` of `ns` with any HTTP response."""
    done = kube.kubectl(
        "exec", "-n", ns, client, "--", "python3", "-c", _CONNECT, address, str(TIMEOUT),
        check=False,
        timeout=TIMEOUT + 30,
    )  # fmt: skip
    return done.returncode == 0


def wait_ready(ns: str, name: str) -> None:
    sapi.wait_ready(ns, name)
    sapi.wait_config_applied(ns, name)


def test_metrics_ports_admit_only_their_namespace_and_monitoring(
    namespace: str, name: str, namespaces: Namespaces
) -> None:
    kube.apply(sapi.manifest(namespace, replicas=1, node_port=None))
    wait_ready(namespace, name)
    backend_port = int(sapi.load_sample()["spec"]["backend"].get("port", 5252))
    (nginx,) = [p for p in kube.active_pods(namespace, name, "proxy") if p.ready]
    (backend,) = [p for p in kube.active_pods(namespace, name) if p.ready]
    operators = [p for p in kube.operator_pods() if p.ready]
    assert operators, "no ready operator pod"

    outsider_ns = namespaces.create("outsider")
    outsider = prometheus.start_client(outsider_ns, "client")
    neighbour = prometheus.start_client(namespace, "client")  # the ScaledApi's own namespace
    scraper = prometheus.scraper()
    monitoring = prometheus.MONITORING_NAMESPACE

    nginx_http = prometheus.url(nginx.ip, NGINX_PORT, "/healthz")
    nginx_metrics = prometheus.url(nginx.ip, NGINX_METRICS_PORT)
    backend_http = prometheus.url(backend.ip, backend_port, "/healthz")
    operator_metrics = [prometheus.url(p.ip, OPERATOR_METRICS_PORT) for p in operators]
    operator_health = [prometheus.url(p.ip, OPERATOR_HEALTH_PORT, "/healthz") for p in operators]

    # Admitted on every cluster.
    assert answers(outsider_ns, outsider, nginx_http), "nginx's port must answer anyone"
    assert answers(namespace, neighbour, nginx_metrics), "its own namespace may scrape nginx"
    assert answers(monitoring, scraper, nginx_metrics), "the monitoring namespace may scrape nginx"
    assert all(answers(monitoring, scraper, u) for u in operator_metrics), "monitoring scrapes the operator"

    enforced = not answers(outsider_ns, outsider, backend_http)
    figures.record(SCENARIO, "NetworkPolicies enforced by the CNI", enforced)
    if not enforced:
        # The air-gapped CNI: the backend, which only nginx may reach, answered another namespace.
        return
    refused = {
        "nginx metrics from another namespace": answers(outsider_ns, outsider, nginx_metrics),
        "operator metrics from another namespace": any(
            answers(outsider_ns, outsider, u) for u in operator_metrics
        ),
        "operator metrics from a ScaledApi's namespace": any(
            answers(namespace, neighbour, u) for u in operator_metrics
        ),
        "operator health port from monitoring": any(answers(monitoring, scraper, u) for u in operator_health),
        "backend from its own namespace, not nginx": answers(namespace, neighbour, backend_http),
    }
    figures.record(SCENARIO, "refused (False) or answered (True)", refused)
    assert not any(refused.values()), f"answered what the policies refuse: {refused}"
