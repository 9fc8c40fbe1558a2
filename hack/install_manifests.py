#!/usr/bin/env python3
"""Print the operator's install manifests, cluster-wide (as manifests/) or namespaced.

Usage: install_manifests.py                      # cluster-wide: what `kubectl apply -k manifests/` gives
       install_manifests.py --namespace NS ...   # namespaced: the operator watches only these namespaces

Namespaced mode grants, cluster-wide, only what kopf needs to find the CRD (read customresourcedefinitions);
every other rule of the ClusterRole in manifests/rbac.yaml becomes a Role in each watched namespace, and
the operator runs with `--namespace=NS` for each instead of `--all-namespaces`. manifests/rbac.yaml stays
the one source of the rules and of the reasons for each (its comments).
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

MANIFESTS = Path(__file__).resolve().parents[1] / "manifests"
# namespace first, as kustomize orders them; the users' roles and the opt-in admission policy are
# cluster-scoped and the same in both modes
FILES = ("operator.yaml", "crd.yaml", "rbac.yaml", "user-roles.yaml", "policy.yaml")
OPERATOR = "scaledapi-operator"
CLUSTER_WIDE_GROUPS = {"apiextensions.k8s.io"}  # kopf reads the CRD, which is cluster-scoped
DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

Manifest = dict[str, Any]


def load(directory: Path = MANIFESTS) -> list[Manifest]:
    documents: list[Manifest] = []
    for name in FILES:
        documents.extend(doc for doc in yaml.safe_load_all((directory / name).read_text()) if doc)
    return documents


def find(documents: Iterable[Manifest], kind: str, name: str) -> Manifest:
    for doc in documents:
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise LookupError(f"manifests: no {kind} {name}")


def is_cluster_wide(rule: Manifest) -> bool:
    return bool(set(rule["apiGroups"]) & CLUSTER_WIDE_GROUPS)


def namespaced(documents: Sequence[Manifest], namespaces: Sequence[str]) -> list[Manifest]:
    """The same install, with the operator's rights limited to `namespaces` (plus reading the CRD)."""
    bad = [ns for ns in namespaces if not DNS_1123_LABEL.fullmatch(ns) or len(ns) > 63]
    if bad:
        raise ValueError(f"--namespace: not a namespace name (DNS-1123 label): {', '.join(bad)}")
    if not namespaces:
        raise ValueError("--namespace: give at least one namespace to watch")
    cluster_role = find(documents, "ClusterRole", OPERATOR)
    binding = find(documents, "ClusterRoleBinding", OPERATOR)
    rules = cluster_role["rules"]
    labels = cluster_role["metadata"].get("labels", {})

    result: list[Manifest] = []
    for doc in documents:
        if doc is cluster_role:
            crd_reader = copy.deepcopy(doc)
            crd_reader["rules"] = [r for r in rules if is_cluster_wide(r)]
            result.append(crd_reader)
        elif doc is binding:
            result.append(copy.deepcopy(doc))
            for ns in namespaces:
                result.extend(
                    namespace_grant(ns, [r for r in rules if not is_cluster_wide(r)], binding, labels)
                )
        elif doc["kind"] == "Deployment" and doc["metadata"]["name"] == OPERATOR:
            result.append(watch_only(doc, namespaces))
        else:
            result.append(copy.deepcopy(doc))
    return result


def namespace_grant(
    namespace: str, rules: list[Manifest], binding: Manifest, labels: dict[str, str]
) -> list[Manifest]:
    role: Manifest = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": OPERATOR, "namespace": namespace, "labels": dict(labels)},
        "rules": copy.deepcopy(rules),
    }
    role_binding: Manifest = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": OPERATOR, "namespace": namespace, "labels": dict(labels)},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": OPERATOR},
        "subjects": copy.deepcopy(binding["subjects"]),
    }
    return [role, role_binding]


def watch_only(deployment: Manifest, namespaces: Sequence[str]) -> Manifest:
    result = copy.deepcopy(deployment)
    container = next(c for c in result["spec"]["template"]["spec"]["containers"] if c["name"] == "operator")
    args: list[str] = container["args"]
    if "--all-namespaces" not in args:
        raise LookupError("manifests/operator.yaml: the operator's args no longer hold --all-namespaces")
    at = args.index("--all-namespaces")
    container["args"] = args[:at] + [f"--namespace={ns}" for ns in namespaces] + args[at + 1 :]
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespace", action="append", default=[], help="a namespace to watch (repeat)")
    options = parser.parse_args(argv)
    documents = load()
    try:
        out = namespaced(documents, options.namespace) if options.namespace else documents
    except (ValueError, LookupError) as error:
        print(f"install_manifests.py: {error}", file=sys.stderr)
        return 2
    yaml.safe_dump_all(out, sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
