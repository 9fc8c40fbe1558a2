"""hack/install_manifests.py: the cluster-wide install is manifests/ itself; the namespaced one grants
nothing cluster-wide but reading the CRD, and everything else only in the watched namespaces."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hack import install_manifests as im

ROOT = Path(__file__).resolve().parents[2]


def kinds(documents: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]) for d in documents]


def test_cluster_wide_is_the_manifests_folder() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "install_manifests.py")],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    printed = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert printed == im.load()
    assert ("ClusterRoleBinding", "", "scaledapi-operator") in kinds(printed)


def test_namespaced_grants_only_crd_reading_cluster_wide() -> None:
    out = im.namespaced(im.load(), ["team-a", "team-b"])
    cluster_role = im.find(out, "ClusterRole", "scaledapi-operator")
    assert cluster_role["rules"] == [
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    # The leader-election Role (its own Lease, in its own namespace) is the same in both modes.
    leader = im.find(out, "Role", "scaledapi-operator-leader")
    assert leader == im.find(im.load(), "Role", "scaledapi-operator-leader")
    assert {res for rule in leader["rules"] for res in rule["resources"]} == {"leases"}
    roles = [d for d in out if d["kind"] == "Role" and d is not leader]
    assert [r["metadata"]["namespace"] for r in roles] == ["team-a", "team-b"]
    original = im.find(im.load(), "ClusterRole", "scaledapi-operator")["rules"]
    for role in roles:
        assert role["rules"] == [r for r in original if not im.is_cluster_wide(r)]
        resources = {res for rule in role["rules"] for res in rule["resources"]}
        assert {"deployments", "roles", "rolebindings", "configmaps"} <= resources
    bindings = [
        d for d in out if d["kind"] == "RoleBinding" and d["metadata"]["name"] == "scaledapi-operator"
    ]
    assert [(b["metadata"]["namespace"], b["roleRef"]["kind"]) for b in bindings] == [
        ("team-a", "Role"),
        ("team-b", "Role"),
    ]
    assert all(
        b["subjects"]
        == [{"kind": "ServiceAccount", "name": "scaledapi-operator", "namespace": "scaledapi-system"}]
        for b in bindings
    )


def test_namespaced_operator_watches_only_its_namespaces() -> None:
    out = im.namespaced(im.load(), ["team-a", "team-b"])
    deployment = im.find(out, "Deployment", "scaledapi-operator")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--all-namespaces" not in args
    assert [a for a in args if a.startswith("--namespace")] == ["--namespace=team-a", "--namespace=team-b"]
    # the cluster-wide source is left as it was
    source = im.find(im.load(), "Deployment", "scaledapi-operator")
    assert "--all-namespaces" in source["spec"]["template"]["spec"]["containers"][0]["args"]


@pytest.mark.parametrize("namespace", ["Team", "-a", "a_b", "x" * 64, ""])
def test_a_bad_namespace_is_refused_by_name(namespace: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "install_manifests.py"), f"--namespace={namespace}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert done.returncode == 2
    assert "--namespace: not a namespace name" in done.stderr
    assert done.stdout == ""
