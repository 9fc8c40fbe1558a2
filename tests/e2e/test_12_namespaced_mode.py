"""Scenario 12: the namespaced install. The operator, reinstalled with `hack/install_manifests.py
--namespace NS`, may act only in NS (plus read the CRD): `kubectl auth can-i` answers no elsewhere, and it
still brings a ScaledApi in NS to serve in turn. The cluster-wide install is put back afterwards.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.e2e import figures, kube, traffic
from tests.e2e import scaledapi as sapi

# Run alone, never beside other scenarios (hack/e2e.sh): reinstalls the operator namespaced: other
# scenarios' namespaces go unwatched.
pytestmark = pytest.mark.serial

OPERATOR_SA = f"system:serviceaccount:{kube.OPERATOR_NAMESPACE}:scaledapi-operator"
INSTALLER = kube.REPO_ROOT / "hack" / "install_manifests.py"


def can_i(verb: str, resource: str, ns: str | None) -> bool:
    where = ["-n", ns] if ns else ["--all-namespaces"]
    result = kube.kubectl("auth", "can-i", verb, resource, *where, "--as", OPERATOR_SA, check=False)
    answer = result.stdout.strip()
    assert answer in {"yes", "no"}, f"kubectl auth can-i {verb} {resource}: {answer!r} {result.stderr}"
    return answer == "yes"


def install(*namespaces: str) -> None:
    args = [f"--namespace={ns}" for ns in namespaces]
    rendered = subprocess.run(
        [sys.executable, str(INSTALLER), *args], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    kube.kubectl("apply", "-f", "-", input=rendered)


def operator_args() -> list[str]:
    dep = kube.kubectl_json(
        "get", "deployment", kube.operator_deployment_name(), "-n", kube.OPERATOR_NAMESPACE
    )
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert isinstance(args, list)
    return [str(a) for a in args]


@pytest.fixture
def namespaced_operator(namespace: str) -> Iterator[str]:
    install(namespace)
    kube.wait_for(
        lambda: f"--namespace={namespace}" in operator_args(), 30.0, 0.5, what="the operator's args to change"
    )
    kube.kubectl("rollout", "status", "deployment", kube.operator_deployment_name(), "-n",
                 kube.OPERATOR_NAMESPACE, "--timeout=180s", timeout=200.0)  # fmt: skip
    kube.wait_operator_ready()
    try:
        yield namespace
    finally:
        kube.kubectl("apply", "-k", str(kube.REPO_ROOT / "manifests"))
        kube.kubectl(
            "delete", "role,rolebinding", "scaledapi-operator", "-n", namespace, "--ignore-not-found"
        )
        kube.kubectl("rollout", "status", "deployment", kube.operator_deployment_name(), "-n",
                     kube.OPERATOR_NAMESPACE, "--timeout=180s", timeout=200.0)  # fmt: skip
        kube.wait_operator_ready()
        assert "--all-namespaces" in operator_args()
        assert can_i("create", "deployments", "default"), "the cluster-wide install was not restored"


def test_namespaced_mode_stays_in_its_namespaces(namespaced_operator: str, name: str) -> None:
    ns = namespaced_operator
    outside = {
        ("create", "deployments", "kube-system"),
        ("patch", "rolebindings", "kube-system"),
        ("create", "pods", "kube-system"),
        ("list", "configmaps", "default"),
        ("create", "deployments", None),
    }
    granted_outside = sorted(str(check) for check in outside if can_i(*check))
    assert not granted_outside, f"the namespaced operator may act outside {ns}: {granted_outside}"
    for verb, resource in [("create", "deployments"), ("patch", "rolebindings"), ("watch", "scaledapis")]:
        assert can_i(verb, resource, ns), f"the namespaced operator may not {verb} {resource} in {ns}"
    assert can_i("list", "customresourcedefinitions", None), "it must still read the CRD"

    kube.apply(sapi.manifest(ns, replicas=2))
    pods = {p.name for p in sapi.wait_serving(ns, name, 2)}
    sapi.wait_config_applied(ns, name)
    sequence = traffic.instances(traffic.DEFAULT_PORT, 10)
    assert set(sequence) == pods, f"expected answers from {pods}, got {sequence}"
    assert all(a != b for a, b in itertools.pairwise(sequence)), f"not in turn: {sequence}"
    figures.record("12 namespaced mode", "checks refused outside the watched namespace", len(outside))
