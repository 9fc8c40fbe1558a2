"""Prometheus' text format, read back: the metrics of a pod, scraped from where a Prometheus would run.

The nginx pods' metrics port (NetworkPolicy NAME-proxy) and the operator's (NetworkPolicy
scaledapi-operator) admit only pods of their own namespace and of the monitoring namespace
(SCALEDAPI_MONITORING_NAMESPACE, `monitoring` in manifests/ and the chart). So the suite scrapes from a
pod in `monitoring`, as Prometheus would, and not through the API server's pod proxy: the API server
connects from its node's address, which a CNI that enforces the policies (kind's kindnet) refuses on
any other node.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess

from tests.e2e import kube

# What manifests/operator.yaml sets as SCALEDAPI_MONITORING_NAMESPACE (and the chart's default).
MONITORING_NAMESPACE = "monitoring"
SCRAPER = "scaledapi-e2e-scraper"
# Any image of the suite with python3 (make up loads it into kind): the client's only tool.
CLIENT_IMAGE = "scaledapi/backend:dev"
_FETCH = (
    "import sys, urllib.request; "
    "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])).read().decode())"
)
_SLEEP = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); time.sleep(1e9)"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: \d+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> Samples:
    """{(name, labels): value} of every sample line; raises on a line that is not one."""
    samples: Samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        found = _SAMPLE.match(line)
        if found is None:
            raise AssertionError(f"not a Prometheus sample line: {line!r}")
        labels = frozenset(_LABEL.findall(found.group(2) or ""))
        samples[(found.group(1), labels)] = float(found.group(3))
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """One series' value; 0 when it is absent (a counter nothing incremented yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def client_pod(ns: str, name: str) -> kube.JSON:
    """A pod that only sleeps, for `kubectl exec ... python3` to make requests from; it passes Pod
    Security "restricted"."""
    restricted: kube.JSON = {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001}
    restricted["seccompProfile"] = {"type": "RuntimeDefault"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app.kubernetes.io/name": name}},
        "spec": {
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "securityContext": restricted,
            "containers": [
                {
                    "name": "client",
                    "image": CLIENT_IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python3", "-c", _SLEEP],
                    "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}},
                    "securityContext": {
                        **restricted,
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def start_client(ns: str, name: str, timeout: float = 120.0) -> str:
    """The client pod `name` in `ns`, running (created when missing); its name."""
    kube.wait_for(
        lambda: kube.get_json("serviceaccount", "default", ns),
        30.0,
        0.2,
        what=f"serviceaccount {ns}/default",
    )
    kube.wait_for(
        lambda: kube.kubectl(
            "apply", "-f", "-", input=json.dumps(client_pod(ns, name)), check=False
        ).returncode
        == 0,
        30.0,
        1.0,
        what=f"pod {ns}/{name} to be created",
    )
    kube.wait_for(
        lambda: (pod := kube.get_json("pod", name, ns)) is not None and kube.pod_state(pod).ready,
        timeout,
        1.0,
        what=f"pod {ns}/{name} to run",
        describe=lambda: json.dumps((kube.get_json("pod", name, ns) or {}).get("status"))[:2000],
    )
    return name


@functools.cache
def scraper() -> str:
    """The scraping pod in the monitoring namespace (made once per process, kept across runs: the
    namespace carries no e2e label, so no clean-up removes it while another worker scrapes)."""
    labels = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": MONITORING_NAMESPACE, "labels": labels},
    }
    # Two workers may apply it at once: one of them is told it already exists, and tries again.
    kube.wait_for(
        lambda: kube.kubectl("apply", "-f", "-", input=json.dumps(namespace), check=False).returncode == 0,
        30.0,
        1.0,
        what=f"namespace {MONITORING_NAMESPACE}",
    )
    return start_client(MONITORING_NAMESPACE, SCRAPER)


def url(ip: str, port: int, path: str = "/metrics") -> str:
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{port}{path}"


def fetch(ns: str, client: str, address: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    """GET `address` from the client pod (exit code not checked: a refused request is an answer too)."""
    return kube.kubectl(
        "exec", "-n", ns, client, "--", "python3", "-c", _FETCH, address, str(timeout),
        check=False,
        timeout=timeout + 30,
    )  # fmt: skip


def pod_ip(ns: str, pod: str) -> str:
    found = kube.get_json("pod", pod, ns)
    ip = str(((found or {}).get("status") or {}).get("podIP") or "")
    if not ip:
        raise AssertionError(f"pod {ns}/{pod} has no IP (status: {(found or {}).get('status')})")
    return ip


def scrape_pod(ns: str, pod: str, port: int, path: str = "/metrics") -> Samples:
    """GET the pod's metrics from the monitoring namespace's scraper pod, as Prometheus would."""
    address = url(pod_ip(ns, pod), port, path)
    done = fetch(MONITORING_NAMESPACE, scraper(), address)
    if done.returncode != 0:
        raise AssertionError(
            f"scraping {address} ({ns}/{pod}) from {MONITORING_NAMESPACE}/{SCRAPER} failed:"
            f" {done.stderr.strip()[-2000:]}"
        )
    return parse(done.stdout)
