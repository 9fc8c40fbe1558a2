"""charts/scaledapi: with its defaults, `helm template` gives the objects of manifests/ (less the Namespace,
which a Helm release does not own), and with watchNamespaces those of hack/install_manifests.py
--namespace; the CRD is manifests/crd.yaml itself (a symlink), so the two installs cannot drift.

Needs the helm binary: $HELM, else PATH, else $SCALEDAPI_CACHE/bin (hack/helm.sh builds it there; make
test runs that first). A missing helm fails, it never skips.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from hack import install_manifests as im

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "scaledapi"
CACHE_BIN = Path(os.environ.get("SCALEDAPI_CACHE", "/var/cache/scaledapi")) / "bin"
RELEASE = "scaledapi"
NAMESPACE = "scaledapi-system"

Manifest = dict[str, Any]
Key = tuple[str, str, str]


def helm_binary() -> str:
    explicit = os.environ.get("HELM")
    if explicit:
        return explicit
    found = shutil.which("helm") or shutil.which("helm", path=str(CACHE_BIN))
    if found is None:
        pytest.fail(
            f"helm is missing (looked in $HELM, PATH and {CACHE_BIN}): run hack/helm.sh, which builds "
            f"helm from the Go module proxy into {CACHE_BIN} (make test does so before the tests)"
        )
    return found


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm_binary(), *args], capture_output=True, text=True, check=check, timeout=120)


def render(*args: str, release: str = RELEASE, namespace: str = NAMESPACE) -> list[Manifest]:
    done = helm("template", release, str(CHART), "--namespace", namespace, "--include-crds", *args)
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def key(doc: Manifest) -> Key:
    return (doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"])


def without_labels(doc: Manifest) -> Manifest:
    result = copy.deepcopy(doc)
    result["metadata"].pop("labels", None)
    return result


def assert_same_install(chart: list[Manifest], files: list[Manifest]) -> None:
    """Object by object: the same kinds, names and namespaces, the same content (RBAC rules, bindings,
    the Deployment's whole spec, ...), and every label of the files (the chart adds Helm's own)."""
    expected = {key(d): d for d in files if d["kind"] != "Namespace"}
    rendered = {key(d): d for d in chart}
    assert len(rendered) == len(chart), "the chart renders an object twice"
    assert sorted(rendered) == sorted(expected)
    for k, doc in expected.items():
        got = rendered[k]
        assert without_labels(got) == without_labels(doc), f"{k} differs from manifests/"
        labels = doc["metadata"].get("labels", {})
        assert labels.items() <= got["metadata"].get("labels", {}).items(), f"{k}: labels"


def test_the_crd_is_manifests_crd_yaml() -> None:
    crds = list((CHART / "crds").iterdir())
    assert len(crds) == 1
    # One source of truth: a symlink that helm follows (and `helm package` resolves), not a copy.
    assert crds[0].is_symlink(), f"{crds[0]} must be a symlink to manifests/crd.yaml"
    assert crds[0].resolve() == (ROOT / "manifests" / "crd.yaml").resolve()


def test_defaults_render_manifests() -> None:
    assert_same_install(render(), im.load())


def test_watch_namespaces_render_install_manifests_namespaced() -> None:
    chart = render("--set", "watchNamespaces={team-a,team-b}")
    assert_same_install(chart, im.namespaced(im.load(), ["team-a", "team-b"]))


def test_lint() -> None:
    done = helm("lint", str(CHART), "--strict", check=False)
    assert done.returncode == 0, done.stdout + done.stderr


USERS_OBJECTS = {  # the users' roles and the admission policy: named after the release, less "-operator"
    ("ClusterRole", "", "e2e-scaledapi-edit"),
    ("ClusterRole", "", "e2e-scaledapi-view"),
    ("ValidatingAdmissionPolicy", "", "e2e-scaledapi-restricted"),
    ("ValidatingAdmissionPolicyBinding", "", "e2e-scaledapi-restricted"),
}


def test_release_name_is_in_every_name() -> None:
    docs = render("--set", "watchNamespaces={team-c}", release="e2e", namespace="e2e-op")
    names = {key(d) for d in docs if d["kind"] != "CustomResourceDefinition"}
    assert names >= USERS_OBJECTS
    assert all(n.startswith("e2e-scaledapi-operator") for _, _, n in names - USERS_OBJECTS), names
    assert ("ClusterRole", "", "e2e-scaledapi-operator") in names
    assert ("Role", "team-c", "e2e-scaledapi-operator") in names
    binding = next(d for d in docs if key(d) == ("RoleBinding", "team-c", "e2e-scaledapi-operator"))
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "e2e-scaledapi-operator", "namespace": "e2e-op"}
    ]


def deployment(docs: list[Manifest]) -> Manifest:
    return next(d for d in docs if d["kind"] == "Deployment")


def test_values_image_resources_annotations() -> None:
    docs = render(
        "--set", "image.repository=registry.example/op", "--set", "image.tag=1.2.3",
        "--set", "image.pullPolicy=Always", "--set", "resources.limits.memory=300Mi",
        "--set", "podAnnotations.scaledapi\\.dev/image-id=abc123",
    )  # fmt: skip
    template = deployment(docs)["spec"]["template"]
    container = template["spec"]["containers"][0]
    assert container["image"] == "registry.example/op:1.2.3"
    assert container["imagePullPolicy"] == "Always"
    assert container["resources"]["limits"] == {"memory": "300Mi"}
    assert template["metadata"]["annotations"] == {"scaledapi.dev/image-id": "abc123"}


def test_metrics_off() -> None:
    docs = render("--set", "metrics.enabled=false")
    assert not [d for d in docs if d["kind"] == "Service"]
    container = deployment(docs)["spec"]["template"]["spec"]["containers"][0]
    assert [p["name"] for p in container["ports"]] == ["health"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SCALEDAPI_METRICS_PORT"] == "0"


def test_metrics_port() -> None:
    docs = render("--set", "metrics.port=9200")
    service = next(d for d in docs if d["kind"] == "Service")
    assert service["metadata"]["annotations"]["prometheus.io/port"] == "9200"
    assert service["spec"]["ports"][0]["port"] == 9200
    container = deployment(docs)["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "metrics", "containerPort": 9200, "protocol": "TCP"} in container["ports"]


def test_a_bad_namespace_is_refused_by_name() -> None:
    done = helm("template", RELEASE, str(CHART), "--set", "watchNamespaces={Team_A}", check=False)
    assert done.returncode != 0
    assert 'watchNamespaces: "Team_A" is not a namespace name' in done.stderr


def network_policy(docs: list[Manifest]) -> Manifest:
    return next(d for d in docs if d["kind"] == "NetworkPolicy")


def test_the_operator_admits_only_its_namespace_and_monitoring_on_its_metrics_port() -> None:
    spec = network_policy(render())["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    assert spec["ingress"] == [
        {
            "from": [
                {"podSelector": {}},
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
            ],
            "ports": [{"port": "metrics", "protocol": "TCP"}],  # not the health port: the kubelet's
        }
    ]


def monitoring_env(docs: list[Manifest]) -> str:
    container = deployment(docs)["spec"]["template"]["spec"]["containers"][0]
    return str(next(e["value"] for e in container["env"] if e["name"] == "SCALEDAPI_MONITORING_NAMESPACE"))


def test_monitoring_namespace_sets_the_operators_policy_and_the_nginx_pods() -> None:
    docs = render("--set", "monitoringNamespace=prometheus")
    peers = network_policy(docs)["spec"]["ingress"][0]["from"]
    assert peers[1] == {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "prometheus"}}}
    assert monitoring_env(docs) == "prometheus"
    none = render("--set", "monitoringNamespace=")
    assert network_policy(none)["spec"]["ingress"][0]["from"] == [{"podSelector": {}}]
    assert monitoring_env(none) == ""


def test_a_bad_monitoring_namespace_is_refused_by_name() -> None:
    done = helm("template", RELEASE, str(CHART), "--set", "monitoringNamespace=Prom_1", check=False)
    assert done.returncode != 0
    assert 'monitoringNamespace: "Prom_1" is not a namespace name' in done.stderr


def by_key(docs: list[Manifest]) -> dict[Key, Manifest]:
    return {key(d): d for d in docs}


def test_user_roles_aggregate_into_the_built_in_roles() -> None:
    docs = by_key(render())
    edit, view = docs[("ClusterRole", "", "scaledapi-edit")], docs[("ClusterRole", "", "scaledapi-view")]
    aggregate = "rbac.authorization.k8s.io/aggregate-to-"
    assert {k: v for k, v in edit["metadata"]["labels"].items() if k.startswith(aggregate)} == {
        f"{aggregate}edit": "true",
        f"{aggregate}admin": "true",
    }
    assert {k: v for k, v in view["metadata"]["labels"].items() if k.startswith(aggregate)} == {
        f"{aggregate}view": "true"
    }

    def grants(role: Manifest) -> dict[str, set[str]]:
        result: dict[str, set[str]] = {}
        for rule in role["rules"]:
            assert rule["apiGroups"] == ["scaledapi.dev"], rule
            for resource in rule["resources"]:
                result.setdefault(resource, set()).update(rule["verbs"])
        return result

    writes = {"create", "update", "patch", "delete", "deletecollection"}
    assert grants(edit) == {
        "scaledapis": {"get", "list", "watch"} | writes,
        "scaledapis/scale": {"get", "update", "patch"},
    }  # never scaledapis/status: the operator's
    assert grants(view) == {
        "scaledapis": {"get", "list", "watch"},
        "scaledapis/status": {"get"},
        "scaledapis/scale": {"get"},
    }


def test_user_roles_off() -> None:
    default = by_key(render())
    off = by_key(render("--set", "userRoles.enabled=false"))
    assert set(default) - set(off) == {
        ("ClusterRole", "", "scaledapi-edit"),
        ("ClusterRole", "", "scaledapi-view"),
    }


def test_admission_policy_binding_and_off() -> None:
    docs = by_key(render(release="e2e"))
    policy = docs[("ValidatingAdmissionPolicy", "", "e2e-scaledapi-restricted")]
    binding = docs[("ValidatingAdmissionPolicyBinding", "", "e2e-scaledapi-restricted")]
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert binding["spec"]["matchResources"] == {
        "namespaceSelector": {"matchLabels": {"scaledapi.dev/restricted": "true"}}
    }
    default = by_key(render())
    off = by_key(render("--set", "admissionPolicy.enabled=false"))
    assert set(default) - set(off) == {
        ("ValidatingAdmissionPolicy", "", "scaledapi-restricted"),
        ("ValidatingAdmissionPolicyBinding", "", "scaledapi-restricted"),
    }


def test_admission_policy_needs_kubernetes_1_30() -> None:
    args = ("template", RELEASE, str(CHART), "--kube-version", "1.29.0")
    done = helm(*args, check=False)
    assert done.returncode != 0
    assert "needs Kubernetes 1.30 or later" in done.stderr
    assert "admissionPolicy.enabled=false" in done.stderr
    assert helm(*args, "--set", "admissionPolicy.enabled=false", check=False).returncode == 0
    assert helm("template", RELEASE, str(CHART), "--kube-version", "1.30.0", check=False).returncode == 0
