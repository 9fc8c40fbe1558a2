"""Scenario 12b: the Helm chart, namespaced. Release `e2e` of charts/scaledapi in a namespace of its own,
watching one test namespace (`watchNamespaces`): installed, it may act only there (`kubectl auth can-i`),
its operator leads with its own Lease and serves a ScaledApi in turn; upgraded (a second watched
namespace, one replica), it serves a scale; uninstalled, its cluster-scoped objects are gone and the CRD
stays. The cluster-wide operator of `make up` is scaled to 0 meanwhile (else it would serve the ScaledApi
too, and prove nothing about the chart), and put back afterwards. Each start of the namespaced operator
takes about a minute before its first pass: kopf tries to list namespaces (not granted, as in the
namespaced install of hack/install_manifests.py) nine times before it falls back to the watched ones.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.e2e import figures, kube, traffic
from tests.e2e import scaledapi as sapi
from tests.e2e.namespaces import Namespaces

# Run alone, never beside other scenarios (hack/e2e.sh): installs a second operator with the chart, beside
# the suite's own.
pytestmark = pytest.mark.serial

SCENARIO = "12b helm namespaced"
CHART = kube.REPO_ROOT / "charts" / "scaledapi"
RELEASE = "e2e"
FULLNAME = "e2e-scaledapi-operator"  # the chart's name for a release whose name lacks "scaledapi"
SELECTOR = "app.kubernetes.io/name=scaledapi-operator"


def helm_binary() -> str:
    explicit = os.environ.get("HELM")
    if explicit:
        return explicit
    found = shutil.which("helm", path=str(kube.CACHE_BIN)) or shutil.which("helm")
    if found is None:
        raise AssertionError(
            f"helm is missing (looked in $HELM, {kube.CACHE_BIN}, PATH): run hack/helm.sh, which builds "
            f"it from the Go module proxy into {kube.CACHE_BIN} (make test does so)"
        )
    return found


def helm(*args: str, timeout: float = 300.0) -> str:
    argv = [helm_binary(), "--kube-context", kube.CONTEXT, *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def install(op_ns: str, *watched: str, replicas: int = 2) -> float:
    """`helm upgrade --install` and wait for the operator's pods; the seconds it took."""
    start = time.monotonic()
    helm("upgrade", "--install", RELEASE, str(CHART), "--namespace", op_ns,
         "--set", f"watchNamespaces={{{','.join(watched)}}}", "--set", f"replicaCount={replicas}",
         "--wait", "--timeout", "180s")  # fmt: skip
    kube.kubectl("rollout", "status", "deployment", FULLNAME, "-n", op_ns, "--timeout=180s", timeout=200.0)
    wait_release_leading(op_ns, replicas)
    return time.monotonic() - start


def wait_release_leading(op_ns: str, replicas: int) -> None:
    def leading() -> str | None:
        current = [kube.pod_state(p) for p in kube.list_json("pods", op_ns, SELECTOR)]
        settled = len(current) == replicas and all(p.ready and not p.terminating for p in current)
        lease = kube.get_json("lease", kube.OPERATOR_LEASE, op_ns) or {}
        holder = (lease.get("spec") or {}).get("holderIdentity")
        return holder if settled and holder in {p.name for p in current} else None

    kube.wait_for(leading, 180.0, 1.0, what=f"{replicas} pods of release {RELEASE} Ready, one leading")


def can_i(op_ns: str, verb: str, resource: str, ns: str | None) -> bool:
    where = ["-n", ns] if ns else ["--all-namespaces"]
    account = f"system:serviceaccount:{op_ns}:{FULLNAME}"
    result = kube.kubectl("auth", "can-i", verb, resource, *where, "--as", account, check=False)
    answer = result.stdout.strip()
    assert answer in {"yes", "no"}, f"kubectl auth can-i {verb} {resource}: {answer!r} {result.stderr}"
    return answer == "yes"


def operator_args(op_ns: str) -> list[str]:
    dep = kube.kubectl_json("get", "deployment", FULLNAME, "-n", op_ns)
    return [str(a) for a in dep["spec"]["template"]["spec"]["containers"][0]["args"]]


@pytest.fixture
def cluster_wide_operator_stopped() -> Iterator[None]:
    name = kube.operator_deployment_name()
    dep = kube.kubectl_json("get", "deployment", name, "-n", kube.OPERATOR_NAMESPACE)
    replicas = int(dep["spec"].get("replicas", 1))
    try:
        kube.kubectl("scale", "deployment", name, "-n", kube.OPERATOR_NAMESPACE, "--replicas=0")
        kube.wait_for(
            lambda: not kube.operator_pods(), 120.0, 1.0, what="the cluster-wide operator's pods to go"
        )
        yield
    finally:
        kube.kubectl("scale", "deployment", name, "-n", kube.OPERATOR_NAMESPACE, f"--replicas={replicas}")
        kube.wait_operator_ready()


def in_turn(pods: set[str]) -> list[str]:
    sequence = traffic.instances(traffic.DEFAULT_PORT, 2 * len(pods) + 2)
    assert set(sequence) == pods, f"expected answers from {pods}, got {sequence}"
    assert all(a != b for a, b in itertools.pairwise(sequence)), f"not in turn: {sequence}"
    return sequence


def test_helm_namespaced_install_upgrade_uninstall(
    namespaces: Namespaces, name: str, cluster_wide_operator_stopped: None
) -> None:
    op_ns = namespaces.create("-op")
    watched = namespaces.create()
    second = namespaces.create("-2")
    try:
        install_s = install(op_ns, watched)
        figures.record(SCENARIO, "install to leading operator (s)", round(install_s, 1))
        assert [a for a in operator_args(op_ns) if a.startswith("--namespace")] == [f"--namespace={watched}"]
        outside = [("create", "deployments", "kube-system"), ("create", "deployments", "default"),
                   ("list", "configmaps", second), ("create", "deployments", None)]  # fmt: skip
        granted = [check for check in outside if can_i(op_ns, *check)]
        assert not granted, f"release {RELEASE} may act outside {watched}: {granted}"
        for verb, resource in [("create", "deployments"), ("patch", "rolebindings"), ("watch", "scaledapis")]:
            assert can_i(op_ns, verb, resource, watched), f"it may not {verb} {resource} in {watched}"
        assert can_i(op_ns, "list", "customresourcedefinitions", None), "it must still read the CRD"

        start = time.monotonic()
        kube.apply(sapi.manifest(watched, replicas=2))
        pods = {p.name for p in sapi.wait_serving(watched, name, 2, timeout=240.0)}
        sapi.wait_config_applied(watched, name)
        figures.record(SCENARIO, "apply to served by 2 copies (s)", round(time.monotonic() - start, 1))
        in_turn(pods)

        upgrade_s = install(op_ns, watched, second, replicas=1)
        figures.record(SCENARIO, "upgrade to leading operator (s)", round(upgrade_s, 1))
        assert kube.get_json("role", FULLNAME, second) is not None, f"the upgrade gave {second} no Role"
        start = time.monotonic()
        sapi.scale(watched, name, 3)
        pods = {p.name for p in sapi.wait_serving(watched, name, 3, timeout=240.0)}
        sapi.wait_config_applied(watched, name)
        figures.record(SCENARIO, "after upgrade: scale 2->3 served (s)", round(time.monotonic() - start, 1))
        in_turn(pods)
    finally:
        helm("uninstall", RELEASE, "--namespace", op_ns, "--ignore-not-found", "--wait", "--timeout", "180s")
    namespaced = [("role", watched), ("role", second), ("deployment", op_ns), ("serviceaccount", op_ns)]
    for kind, ns in [("clusterrole", None), ("clusterrolebinding", None), *namespaced]:
        assert kube.get_json(kind, FULLNAME, ns) is None, f"{kind} {FULLNAME} outlived the release"
    assert kube.get_json("crd", kube.CRD_NAME) is not None, "helm uninstall must keep the CRD"
