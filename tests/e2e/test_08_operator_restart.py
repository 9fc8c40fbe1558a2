"""Scenario 8: restarting the operator changes no child; their resourceVersions stay the same.

After the restart the new operator pod resumes every ScaledApi (kopf's resume handler) and its child
watches replay every child; then its resync loop passes over everything once more. The test waits for the
new pod's log line about resuming this ScaledApi and then watches the resourceVersions through two resync
periods (read from the operator's code), failing at the first change: the resync takes a ScaledApi once no
pass went through it for one period, so the second period holds its pass.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.e2e import figures, kube
from tests.e2e import scaledapi as sapi

# Run alone, never beside other scenarios (hack/e2e.sh): restarts the operator, which every scenario's
# ScaledApi needs.
pytestmark = pytest.mark.serial

CHILD_KINDS = "deploy,svc,cm,pdb,sa,role,rolebinding,networkpolicy"
HANDLERS = kube.REPO_ROOT / "operator" / "scaledapi_operator" / "handlers.py"


def resync_seconds() -> float:
    """The operator's resync period (RESYNC_SECONDS in handlers.py), 30 s if it cannot be read."""
    if HANDLERS.is_file():
        found = re.search(r"^RESYNC_SECONDS\s*=\s*([0-9.]+)", HANDLERS.read_text(), re.MULTILINE)
        if found:
            return float(found.group(1))
    return 30.0


def children(ns: str, name: str) -> dict[str, str]:
    versions = kube.resource_versions(ns, name, CHILD_KINDS)
    # The nginx pods write their reports into this one; the operator creates it but never rewrites it.
    versions.pop(f"ConfigMap/{name}-proxy-status", None)
    return versions


def test_operator_restart_changes_nothing(namespace: str, name: str) -> None:
    kube.apply(sapi.manifest(namespace, replicas=2))
    sapi.wait_serving(namespace, name, 2)
    sapi.wait_config_applied(namespace, name)
    sapi.wait_observed(namespace, name)
    sapi.wait_ready(namespace, name, timeout=60.0, interval=0.5)

    before = children(namespace, name)
    for kind_name in (
        f"Deployment/{name}-backend", f"Service/{name}-backend", f"PodDisruptionBudget/{name}-backend",
        f"ConfigMap/{name}-proxy", f"Deployment/{name}-proxy", f"Service/{name}-proxy",
        f"ServiceAccount/{name}-proxy", f"Role/{name}-proxy", f"RoleBinding/{name}-proxy",
        f"NetworkPolicy/{name}-backend", f"NetworkPolicy/{name}-proxy",
    ):  # fmt: skip
        assert kind_name in before, f"{kind_name} missing (or not labelled); children: {sorted(before)}"
    pods_before = {p.uid for p in kube.pods(namespace, name)} | {
        p.uid for p in kube.pods(namespace, name, "proxy")
    }

    old = {p.name for p in kube.operator_pods()}
    operator = kube.operator_deployment_name()
    started = time.monotonic()
    kube.kubectl("rollout", "restart", f"deployment/{operator}", "-n", kube.OPERATOR_NAMESPACE)
    kube.kubectl(
        "rollout", "status", f"deployment/{operator}", "-n", kube.OPERATOR_NAMESPACE, "--timeout=180s",
        timeout=200.0,
    )  # fmt: skip
    new_pods = kube.wait_operator_ready()
    replaced = [p.name for p in new_pods if p.name in old]
    assert not replaced, f"operator pods were not replaced: {replaced}"
    leader = kube.operator_leader()
    assert leader is not None

    def resumed() -> bool:
        logs = kube.kubectl("logs", "-n", kube.OPERATOR_NAMESPACE, leader, check=False).stdout
        return any(f"[{namespace}/{name}]" in line and "resum" in line.lower() for line in logs.splitlines())

    kube.wait_for(
        resumed,
        120.0,
        1.0,
        what=f"the new leading operator pod {leader} to log resuming {namespace}/{name}",
        describe=lambda: kube.kubectl(
            "logs", "-n", kube.OPERATOR_NAMESPACE, leader, "--tail=30", check=False
        ).stdout,
    )
    resumed_after = time.monotonic() - started

    # Two resync periods (plus margin) of watching, so that a resync pass falls inside; a change fails at
    # once.
    window = 2 * resync_seconds() + 5.0
    window_end = time.monotonic() + window

    def changed_or_done() -> str | None:
        now = children(namespace, name)
        if now != before:
            changes = {
                k: f"{before.get(k)} -> {now.get(k)}"
                for k in sorted(set(before) | set(now))
                if before.get(k) != now.get(k)
            }
            return f"changed: {changes}"
        return "unchanged" if time.monotonic() >= window_end else None

    verdict = kube.wait_for(changed_or_done, window + 60.0, 1.0, what="a resync period to pass")
    assert verdict == "unchanged", f"restarting the operator changed children: {verdict}"
    pods_after = {p.uid for p in kube.pods(namespace, name)} | {
        p.uid for p in kube.pods(namespace, name, "proxy")
    }
    assert pods_after == pods_before, "restarting the operator replaced pods"
    sapi.wait_observed(namespace, name)
    figures.record("8 operator restart", "children compared", len(before))
    figures.record("8 operator restart", "new operator resumed the object after_s", round(resumed_after, 1))
    figures.record("8 operator restart", "watched for_s", window)
