"""The kind nodes of the suite's cluster: which are workers, running a command on one, stopping one."""

from __future__ import annotations

import shutil
import subprocess

from tests.e2e import kube

CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
MULTINODE_HINT = "make e2e runs on kind-config-multinode.yaml (one control plane, two workers)"


def workers() -> list[str]:
    """Names of the worker nodes (where the suite's pods run), sorted; at least two or an error."""
    names = sorted(
        node["metadata"]["name"]
        for node in kube.list_json("nodes", None)
        if CONTROL_PLANE_LABEL not in (node["metadata"].get("labels") or {})
    )
    if len(names) < 2:
        raise AssertionError(
            f"the cluster has {len(names)} worker node(s), the scenario needs 2: {MULTINODE_HINT}"
        )
    return names


def all_nodes() -> list[str]:
    return sorted(node["metadata"]["name"] for node in kube.list_json("nodes", None))


def docker(*args: str, timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker")
    if binary is None:
        raise AssertionError("docker is missing: the suite runs commands in the kind node containers")
    result = subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}: {result.stderr[-2000:]}")
    return result


def on_node(node: str, *command: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run a command in a kind node's container (the node's own network namespace)."""
    return docker("exec", node, *command, timeout=timeout, check=False)


def node_ready(node: str) -> bool:
    obj = kube.get_json("node", node)
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
