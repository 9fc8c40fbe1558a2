"""Scenario 22: who may create ScaledApis, and the opt-in admission policy of restricted namespaces.

Creating a ScaledApi is as strong as creating a Deployment plus reading the namespace's Secrets (README,
"Who may create ScaledApis"). The rights come with the built-in roles: ClusterRoles scaledapi-edit and
scaledapi-view (manifests/user-roles.yaml) are aggregated into `edit`/`admin` and `view`, so a service
account bound to `edit` in a namespace may create and scale ScaledApis there but never write their status,
and one bound to `view` may only read them (`kubectl auth can-i`, and a server-side dry run as each).

In a namespace labelled scaledapi.dev/restricted=true, ValidatingAdmissionPolicy scaledapi-restricted
(manifests/policy.yaml) refuses a ScaledApi that reads a Secret (env secretKeyRef, envFrom secretRef),
runs as root (runAsUser 0, or runAsNonRoot false) or asks for a NodePort or LoadBalancer Service, with a
message naming the field; the sample with a ClusterIP Service is accepted there, and every refused
ScaledApi is accepted in a namespace without the label. These are server-side dry runs: nothing is
stored. Last, a ScaledApi created before its namespace got the label keeps being handled: a metadata
change passes (kopf's own annotations too: the operator records a scale it handled), a change of its spec
that keeps the Secret is refused, one that drops it passes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from tests.e2e import figures, kube, ports
from tests.e2e import scaledapi as sapi
from tests.e2e.namespaces import Namespaces

SCENARIO = "22 admission policy"
RESTRICTED_LABEL = "scaledapi.dev/restricted"
POLICY_KIND = "validatingadmissionpolicies"
OPERATOR_LABEL = "app.kubernetes.io/name=scaledapi-operator"
DIFF_BASE = "scaledapi.dev/last-handled-configuration"  # kopf's annotation (handlers.apply_settings)
ENFORCED_WITHIN = 60.0  # the API server's policy and namespace caches follow a watch


@dataclass(frozen=True)
class Refused:
    """A ScaledApi the policy refuses in a restricted namespace."""

    id: str
    path: str  # the field, as the message must name it
    backend: dict[str, Any] = field(default_factory=dict)
    proxy: dict[str, Any] = field(default_factory=dict)
    node_port: int | None = None

    def manifest(self, ns: str) -> dict[str, Any]:
        return sapi.manifest(
            ns, name=f"e2e-{self.id}", node_port=self.node_port, backend=self.backend, proxy=self.proxy
        )


REFUSED = [
    Refused(
        "env-secret-key-ref",
        "spec.backend.env[1].valueFrom.secretKeyRef",
        backend={
            "env": [
                {"name": "GREETING", "value": "Hello"},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api-token", "key": "token"}}},
            ]
        },
    ),
    Refused(
        "env-from-secret-ref",
        "spec.backend.envFrom[0].secretRef",
        backend={"envFrom": [{"secretRef": {"name": "api-env"}}]},
    ),
    Refused(
        "run-as-root",
        "spec.backend.securityContext.runAsUser",
        backend={"securityContext": {"runAsUser": 0, "runAsNonRoot": False}},
    ),
    Refused(
        "run-as-non-root-false",
        "spec.backend.securityContext.runAsNonRoot",
        backend={"securityContext": {"runAsUser": 10001, "runAsNonRoot": False}},
    ),
    Refused("node-port", "spec.proxy.serviceType", node_port=ports.MAIN),  # a dry run: no port is held
    Refused("load-balancer", "spec.proxy.serviceType", proxy={"serviceType": "LoadBalancer"}),
]

# Accepted in a restricted namespace: the sample as ClusterIP, and what the rules must not catch (a
# ConfigMap key and a whole ConfigMap, a pod field, an explicit non-root user).
ACCEPTED = {
    "sample-cluster-ip": {},
    "config-maps-and-non-root": {
        "env": [
            {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "api-config", "key": "greeting"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        ],
        "envFrom": [{"configMapRef": {"name": "api-env"}}],
        "securityContext": {"runAsUser": 10002, "runAsGroup": 10002, "runAsNonRoot": True},
    },
}


def create_dry_run(obj: dict[str, Any], *extra: str) -> tuple[int, str]:
    result = kube.kubectl(
        "create", "--dry-run=server", "-f", "-", "-o", "name", *extra, input=json.dumps(obj), check=False
    )
    return result.returncode, (result.stderr + result.stdout).strip()


def refused_by_policy(code: int, output: str) -> bool:
    return code != 0 and "ValidatingAdmissionPolicy" in output


def label_restricted(ns: str) -> float:
    """Label the namespace; the monotonic time it was labelled."""
    kube.kubectl("label", "namespace", ns, f"{RESTRICTED_LABEL}=true")
    return time.monotonic()


def wait_enforced(ns: str, labelled_at: float) -> None:
    """Wait until the API server applies the policy in ``ns`` (its caches follow the label by a watch)."""
    probe = REFUSED[-1].manifest(ns)

    def enforced() -> bool:
        return refused_by_policy(*create_dry_run(probe))

    kube.wait_for(
        enforced,
        ENFORCED_WITHIN,
        0.5,
        what=f"the policy to refuse a LoadBalancer ScaledApi in {ns} (labelled {RESTRICTED_LABEL}=true)",
        describe=lambda: create_dry_run(probe)[1] + " | " + describe_policies(),
    )
    figures.record(SCENARIO, "label to enforced (s)", round(time.monotonic() - labelled_at, 1))


def describe_policies() -> str:
    policies = kube.list_json(f"{POLICY_KIND},validatingadmissionpolicybindings", None, OPERATOR_LABEL)
    return json.dumps(
        [{"kind": p["kind"], "name": p["metadata"]["name"], "spec": p["spec"]} for p in policies]
    )


def can_i(ns: str, account: str, verb: str, resource: str, subresource: str = "") -> bool:
    user = f"system:serviceaccount:{ns}:{account}"
    extra = [f"--subresource={subresource}"] if subresource else []
    result = kube.kubectl("auth", "can-i", verb, resource, *extra, "-n", ns, "--as", user, check=False)
    answer = result.stdout.strip()
    assert answer in {"yes", "no"}, (
        f"kubectl auth can-i {verb} {resource} as {user}: {answer!r} {result.stderr}"
    )
    return answer == "yes"


# --- the policy object -------------------------------------------------------------------------------------


def test_policy_is_installed_and_type_checks() -> None:
    """make up installs the policy and its binding; the API server's type check of its expressions against
    the CRD's schema (status.typeChecking, written by kube-controller-manager) finds nothing."""
    policies = kube.list_json(POLICY_KIND, None, OPERATOR_LABEL)
    assert policies, f"no ValidatingAdmissionPolicy labelled {OPERATOR_LABEL}: {kube.MAKE_UP_HINT}"
    bindings = kube.list_json("validatingadmissionpolicybindings", None, OPERATOR_LABEL)
    bound = {b["spec"]["policyName"] for b in bindings}
    assert {p["metadata"]["name"] for p in policies} <= bound, f"a policy without its binding: {bindings}"

    def checked() -> list[kube.JSON] | None:
        current = kube.list_json(POLICY_KIND, None, OPERATOR_LABEL)
        done = all(
            (p.get("status") or {}).get("observedGeneration") == p["metadata"]["generation"] for p in current
        )
        return current if done else None

    for policy in kube.wait_for(checked, 120.0, 1.0, what="the policies' status to be written"):
        warnings = ((policy.get("status") or {}).get("typeChecking") or {}).get("expressionWarnings")
        assert not warnings, f"{policy['metadata']['name']}: type checking: {json.dumps(warnings)}"


# --- who may create ScaledApis -----------------------------------------------------------------------------


def test_edit_and_view_include_scaledapis(namespace: str) -> None:
    """Bound to the built-in edit, a service account may create, change and scale ScaledApis; bound to
    view, only read them; with neither, nothing. The status subresource stays the operator's."""
    for account, role in [("editor", "edit"), ("viewer", "view")]:
        kube.kubectl("create", "rolebinding", f"{account}-{role}", f"--clusterrole={role}",
                     f"--serviceaccount={namespace}:{account}", "-n", namespace)  # fmt: skip
    # The RBAC authorizer reads bindings from a watch; the ClusterRoles were aggregated at install.
    kube.wait_for(
        lambda: can_i(namespace, "editor", "create", kube.PLURAL),
        60.0,
        0.5,
        what=f"the edit ClusterRole to allow creating {kube.PLURAL} (aggregated from scaledapi-edit)",
        describe=lambda: json.dumps(kube.kubectl_json("get", "clusterrole", "edit").get("rules", [])[-3:]),
    )
    expected = {
        ("editor", "create", ""): True,
        ("editor", "get", ""): True,
        ("editor", "list", ""): True,
        ("editor", "watch", ""): True,
        ("editor", "patch", ""): True,
        ("editor", "update", ""): True,
        ("editor", "delete", ""): True,
        ("editor", "deletecollection", ""): True,
        ("editor", "patch", "scale"): True,
        ("editor", "update", "scale"): True,
        ("editor", "patch", "status"): False,
        ("editor", "update", "status"): False,
        ("viewer", "get", ""): True,
        ("viewer", "list", ""): True,
        ("viewer", "watch", ""): True,
        ("viewer", "get", "status"): True,
        ("viewer", "get", "scale"): True,
        ("viewer", "create", ""): False,
        ("viewer", "patch", ""): False,
        ("viewer", "delete", ""): False,
        ("viewer", "patch", "scale"): False,
        ("nobody", "get", ""): False,
    }
    answers = {k: can_i(namespace, k[0], k[1], kube.PLURAL, k[2]) for k in expected}
    wrong = {f"{a} {v} {kube.PLURAL}{'/' + s if s else ''}": answers[(a, v, s)]
             for (a, v, s), want in expected.items() if answers[(a, v, s)] != want}  # fmt: skip
    assert not wrong, f"kubectl auth can-i answered otherwise: {wrong}"

    # The same through a real request: a server-side dry run as each account.
    obj = sapi.manifest(namespace, node_port=None)
    code, output = create_dry_run(obj, f"--as=system:serviceaccount:{namespace}:editor")
    assert code == 0, f"a ScaledApi as an editor was refused: {output}"
    code, output = create_dry_run(obj, f"--as=system:serviceaccount:{namespace}:viewer")
    assert code != 0 and "forbidden" in output.lower(), f"a ScaledApi as a viewer: {code} {output}"


# --- the policy in a restricted namespace ------------------------------------------------------------------


def test_restricted_namespace_refuses_secrets_root_and_node_ports(namespaces: Namespaces) -> None:
    restricted = namespaces.create("-restricted")
    open_ns = namespaces.create("-open")
    wait_enforced(restricted, label_restricted(restricted))

    problems: list[str] = []
    for case in REFUSED:
        code, output = create_dry_run(case.manifest(restricted))
        if not refused_by_policy(code, output):
            problems.append(f"{case.id}: not refused by the policy in {restricted}: {code} {output}")
        elif case.path not in output:
            problems.append(f"{case.id}: refused, but the message does not name {case.path}: {output}")
        code, output = create_dry_run(case.manifest(open_ns))
        if code != 0:
            problems.append(f"{case.id}: refused without the label (namespace {open_ns}): {output}")
    for case_id, backend in ACCEPTED.items():
        code, output = create_dry_run(sapi.manifest(restricted, name=f"e2e-{case_id}", node_port=None,
                                                    backend=backend))  # fmt: skip
        if code != 0:
            problems.append(f"{case_id}: refused in {restricted}: {output}")
    assert not problems, "\n".join(problems)


def test_labelled_later_keeps_handling_but_refuses_spec_changes(namespace: str, name: str) -> None:
    secret_ref = {"envFrom": [{"secretRef": {"name": "api-env", "optional": True}}]}
    kube.apply(sapi.manifest(namespace, replicas=0, node_port=None, backend=secret_ref))
    kube.wait_for(lambda: handled_replicas(namespace, name) == 0, 120.0, 1.0,
                  what=f"the operator to handle {namespace}/{name}",
                  describe=lambda: sapi.describe(namespace, name))  # fmt: skip
    wait_enforced(namespace, label_restricted(namespace))

    # A change of spec that keeps the Secret: refused, naming it.
    patch = json.dumps({"spec": {"backend": {"terminationDelaySeconds": 3}}})
    result = kube.kubectl("patch", kube.PLURAL, name, "-n", namespace, "--type=merge", "-p", patch,
                          "--dry-run=server", check=False)  # fmt: skip
    output = result.stderr + result.stdout
    assert refused_by_policy(result.returncode, output), f"a spec change that keeps the Secret: {output}"
    assert "spec.backend.envFrom[0].secretRef" in output, output

    # Metadata only: a user's annotation, and the operator's own bookkeeping after a scale (the scale
    # subresource is not matched; kopf then patches its annotations on the ScaledApi itself).
    kube.kubectl("annotate", kube.PLURAL, name, "-n", namespace, "example.com/owner=team-a")
    sapi.scale(namespace, name, 1)
    kube.wait_for(lambda: handled_replicas(namespace, name) == 1, 120.0, 1.0,
                  what=f"the operator to record the scale of {namespace}/{name} in {DIFF_BASE}",
                  describe=lambda: sapi.describe(namespace, name))  # fmt: skip

    # A change of spec that drops the Secret passes.
    patch = json.dumps(
        {"spec": {"backend": {"envFrom": [{"configMapRef": {"name": "api-env", "optional": True}}]}}}
    )
    result = kube.kubectl("patch", kube.PLURAL, name, "-n", namespace, "--type=merge", "-p", patch,
                          "--dry-run=server", check=False)  # fmt: skip
    assert result.returncode == 0, f"a spec change that drops the Secret was refused: {result.stderr}"


def handled_replicas(ns: str, name: str) -> int | None:
    """spec.replicas as kopf last handled it (its diff-base annotation), or None before the first pass."""
    obj = sapi.get(ns, name) or {}
    text = (obj.get("metadata", {}).get("annotations") or {}).get(DIFF_BASE)
    if not text:
        return None
    replicas = json.loads(text).get("spec", {}).get("replicas")
    return int(replicas) if isinstance(replicas, int) else None
