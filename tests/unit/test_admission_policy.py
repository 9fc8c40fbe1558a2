"""manifests/policy.yaml and manifests/user-roles.yaml without a cluster: installed by both install paths,
and every field the policy reads or names in a message is a field of the CRD's schema (a renamed field
would otherwise leave a rule that never fires). tests/e2e/test_22_admission_policy.py runs them on kind.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from hack import install_manifests as im

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
LABEL = "scaledapi.dev/restricted"

Manifest = dict[str, Any]


def load(name: str) -> list[Manifest]:
    return [d for d in yaml.safe_load_all((MANIFESTS / name).read_text()) if d]


def policy() -> Manifest:
    return next(d for d in load("policy.yaml") if d["kind"] == "ValidatingAdmissionPolicy")


def crd_schema() -> Manifest:
    crd = next(d for d in load("crd.yaml") if d["kind"] == "CustomResourceDefinition")
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert isinstance(schema, dict)
    return schema


def in_schema(path: str) -> bool:
    """Whether a dotted path such as spec.backend.env[].valueFrom.secretKeyRef (or env[3]) is in the CRD."""
    node = crd_schema()
    for part in re.sub(r"\[\d*\]", ".[]", path).split("."):
        if part == "[]":
            if node.get("type") != "array":
                return False
            node = node["items"]
        else:
            properties = node.get("properties") or {}
            if part not in properties:
                return False
            node = properties[part]
    return True


def test_make_up_and_the_namespaced_install_apply_them() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    for name in ("user-roles.yaml", "policy.yaml"):
        assert name in kustomization["resources"], f"kubectl apply -k manifests/ (make up) misses {name}"
        assert name in im.FILES, f"hack/install_manifests.py (SCALEDAPI_NAMESPACES) misses {name}"
    kinds = {d["kind"] for d in im.load()}
    assert {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} <= kinds


def test_every_message_names_a_field_of_the_crd() -> None:
    validations = policy()["spec"]["validations"]
    assert len(validations) == 5
    for validation in validations:
        message = validation["message"]
        assert "\n" not in message, "the API server refuses a message with a line break"
        assert LABEL in message, message
        field = message.split(":", 1)[0]
        assert in_schema(field), f"{field} (message {message!r}) is not in manifests/crd.yaml"
        if "messageExpression" in validation:
            # its literal start names the same field, with the index or value the expression adds
            start = re.match(r"'([\w.]+)", validation["messageExpression"])
            assert start is not None and start.group(1) == field.split("[")[0], validation
        assert validation["reason"] == "Forbidden"


def test_every_field_an_expression_reads_is_in_the_crd() -> None:
    spec = policy()["spec"]
    texts = [v["expression"] for v in spec["validations"]]
    texts += [v.get("messageExpression", "") for v in spec["validations"]]
    texts += [v["expression"] for v in spec["variables"]]
    read = {m for text in texts for m in re.findall(r"object\.(spec(?:\.\w+)+)", text)}
    assert {"spec.backend.env", "spec.backend.envFrom", "spec.proxy.serviceType"} <= read
    missing = sorted(path for path in read if not in_schema(path))
    assert not missing, f"the policy reads fields manifests/crd.yaml does not have: {missing}"


def test_the_binding_is_opt_in_by_namespace_label() -> None:
    binding = next(d for d in load("policy.yaml") if d["kind"] == "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == policy()["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert binding["spec"]["matchResources"] == {"namespaceSelector": {"matchLabels": {LABEL: "true"}}}
    constraints = policy()["spec"]["matchConstraints"]
    assert constraints["resourceRules"] == [
        {
            "apiGroups": ["scaledapi.dev"],
            "apiVersions": ["v1alpha1"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["scaledapis"],
        }
    ]
