"""Scenario 6: the API server refuses bad input, with a message that names the field.

Each case is the sample with one thing broken, sent with ``kubectl create --dry-run=server
--validate=strict``: the server runs the CRD's schema, its CEL rules and strict field validation, and
stores nothing. Besides the cases written out here, one case is derived from every bound, enum, pattern,
length and required list of manifests/crd.yaml, so that a rule added to the schema is covered too; a CEL
rule needs a written case (test_every_cel_rule_has_a_case says which one is missing).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from tests.e2e import kube, ports
from tests.e2e import scaledapi as sapi

Mutation = Callable[[dict[str, Any]], None]
_MISSING = object()


@dataclass(frozen=True)
class Case:
    id: str
    path: tuple[str, ...]  # where in the object (from the root), e.g. ("spec", "replicas")
    value: Any = _MISSING  # _MISSING deletes the key
    expect: tuple[str, ...] = ()  # all must appear in kubectl's stderr; default: the dotted path
    extra: dict[tuple[str, ...], Any] = field(default_factory=dict)  # further settings (valid on their own)

    def expected(self) -> tuple[str, ...]:
        return self.expect or (".".join(self.path),)

    def apply_to(self, obj: dict[str, Any]) -> None:
        for path, value in self.extra.items():
            _set(obj, path, value)
        _set(obj, self.path, self.value)


def _set(obj: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    target = obj
    for key in path[:-1]:
        target = target.setdefault(key, {})
    if value is _MISSING:
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value


S = ("spec",)
B = ("spec", "backend")
P = ("spec", "proxy")

WRITTEN: list[Case] = [
    Case("negative-replicas", (*S, "replicas"), -1),
    Case("replicas-over-max", (*S, "replicas"), 51),
    Case("replicas-not-integer", (*S, "replicas"), "two"),
    Case("empty-image", (*B, "image"), ""),
    Case("image-with-whitespace", (*B, "image"), "scaledapi/backend: dev"),
    Case("missing-image", (*B, "image")),
    Case("missing-backend", (*S, "backend")),
    Case("missing-proxy", (*S, "proxy")),
    Case("missing-proxy-image", (*P, "image")),
    Case("backend-port-0", (*B, "port"), 0),
    Case("backend-port-70000", (*B, "port"), 70000),
    Case("proxy-port-0", (*P, "port"), 0),
    Case("proxy-port-70000", (*P, "port"), 70000),
    Case("bad-pull-policy", (*B, "imagePullPolicy"), "Sometimes"),
    Case("bad-proxy-pull-policy", (*P, "imagePullPolicy"), "Sometimes"),
    Case("termination-delay-negative", (*B, "terminationDelaySeconds"), -1),
    Case("termination-delay-over-max", (*B, "terminationDelaySeconds"), 61),
    Case("graceful-shutdown-0", (*B, "gracefulShutdownSeconds"), 0),
    Case("graceful-shutdown-over-max", (*B, "gracefulShutdownSeconds"), 301),
    Case("proxy-replicas-0", (*P, "replicas"), 0),
    Case("proxy-replicas-over-max", (*P, "replicas"), 11),
    Case("bad-service-type", (*P, "serviceType"), "External"),
    Case("node-port-below-range", (*P, "nodePort"), 29999),
    Case("node-port-above-range", (*P, "nodePort"), 32768),
    # CEL: a node port only with NodePort or LoadBalancer. The rule may sit on spec.proxy (with or
    # without a fieldPath), so the message must name spec.proxy and nodePort.
    Case(
        "node-port-with-cluster-ip",
        (*P, "serviceType"),
        "ClusterIP",
        expect=("spec.proxy", "nodePort"),
        extra={(*P, "nodePort"): ports.MAIN},
    ),
    Case("external-url-ftp", (*P, "externalURL"), "ftp://localhost:8080"),
    Case("external-url-no-scheme", (*P, "externalURL"), "localhost:8080"),
    Case("worker-processes-0", (*P, "workerProcesses"), 0),
    Case("worker-processes-over-max", (*P, "workerProcesses"), 9),
    Case("next-upstream-tries-0", (*P, "nextUpstreamTries"), 0),
    Case("next-upstream-tries-over-max", (*P, "nextUpstreamTries"), 11),
    Case("upstream-timeout-0", (*P, "upstreamTimeoutSeconds"), 0),
    Case("upstream-timeout-over-max", (*P, "upstreamTimeoutSeconds"), 301),
    # The container fields of a user's own API image: CEL on env items, envFrom items, resources, and
    # the security context (root only when asked for twice).
    Case(
        "env-value-and-value-from",
        (*B, "env"),
        [{"name": "A", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        expect=("spec.backend.env[0]", "exactly one of value and valueFrom"),
    ),
    Case("env-bad-name", (*B, "env"), [{"name": "1A", "value": "x"}], expect=("spec.backend.env[0].name",)),
    Case(
        "env-from-both",
        (*B, "envFrom"),
        [{"configMapRef": {"name": "a"}, "secretRef": {"name": "b"}}],
        expect=("spec.backend.envFrom[0]", "exactly one of configMapRef and secretRef"),
    ),
    Case(
        "requests-unknown-resource",
        (*B, "resources"),
        {"requests": {"gpu": "1"}},
        expect=("spec.backend.resources.requests", "cpu, memory and ephemeral-storage"),
    ),
    Case(
        "limits-unknown-resource",
        (*B, "resources"),
        {"limits": {"gpu": "1"}},
        expect=("spec.backend.resources.limits", "cpu, memory and ephemeral-storage"),
    ),
    Case(
        "limits-bad-quantity",
        (*B, "resources"),
        {"limits": {"memory": "lots"}},
        expect=("spec.backend.resources.limits.memory",),
    ),
    # Quantities are int-or-string: the pattern holds for a string, minimum 0 for an integer.
    Case(
        "requests-negative-integer",
        (*B, "resources"),
        {"requests": {"cpu": -1}},
        expect=("spec.backend.resources.requests.cpu",),
    ),
    Case(
        "limits-negative-integer",
        (*B, "resources"),
        {"limits": {"memory": -1}},
        expect=("spec.backend.resources.limits.memory",),
    ),
    Case(
        "limits-more-than-three",
        (*B, "resources"),
        {"limits": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "1Gi", "hugepages-2Mi": "2Mi"}},
        expect=("spec.backend.resources.limits", "at most 3"),
    ),
    Case(
        "env-divisor-negative-integer",
        (*B, "env"),
        [{"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": -1}}}],
        expect=("spec.backend.env[0].valueFrom.resourceFieldRef.divisor",),
    ),
    # An Exec readiness check and its command come together (CEL on readiness).
    Case(
        "exec-readiness-without-command",
        (*B, "readiness"),
        {"type": "Exec"},
        expect=("spec.backend.readiness.command", "required with readiness.type Exec"),
    ),
    Case(
        "command-with-http-readiness",
        (*B, "readiness"),
        {"type": "HTTP", "command": ["true"]},
        expect=("spec.backend.readiness.command", "allowed only with it"),
    ),
    # Held requests stay in the nginx pod's memory: their number times their body is bounded (CEL).
    Case(
        "held-requests-over-the-memory-budget",
        (*S, "scaleToZero"),
        {"idleSeconds": 60, "maxHeldRequests": 100, "maxHeldBodyBytes": 1048576},
        expect=("spec.scaleToZero.maxHeldRequests", "64 MiB"),
    ),
    # Images and check paths: no whitespace (a Unicode one too) and no control character.
    Case("image-with-control-character", (*B, "image"), "scaledapi/backend:dev\x07"),
    Case("image-with-no-break-space", (*B, "image"), "scaledapi/backend:\u00a0dev"),
    Case("proxy-image-with-delete", (*P, "image"), "scaledapi/nginx:dev\x7f"),
    Case(
        "canary-image-with-escape",
        (*S, "canary"),
        {"image": "scaledapi/backend:\x1b[31mdev2", "weight": 10},
        expect=("spec.canary.image",),
    ),
    Case(
        "readiness-path-with-space",
        (*B, "readiness"),
        {"path": "/health z"},
        expect=("spec.backend.readiness.path",),
    ),
    Case(
        "liveness-path-with-newline",
        (*B, "liveness"),
        {"path": "/healthz\nX-Injected: 1"},
        expect=("spec.backend.liveness.path",),
    ),
    Case(
        "root-without-run-as-non-root-false",
        (*B, "securityContext"),
        {"runAsUser": 0},
        expect=("spec.backend.securityContext.runAsUser", "runAsNonRoot: false"),
    ),
    # CEL on the object: children are NAME-backend, NAME-proxy-status etc. and Services need DNS-1035
    # labels, so the name has at most 50 characters, a lowercase letter first, no dot.
    Case("name-too-long", ("metadata", "name"), "n" * 51, expect=("metadata.name", "50")),
    Case("name-with-dot", ("metadata", "name"), "e2e.validation", expect=("metadata.name",)),
    Case("name-leading-digit", ("metadata", "name"), "9lives", expect=("metadata.name", "letter")),
    # Strict field validation: a misspelt field is an error, not silently dropped.
    Case("unknown-spec-field", (*S, "replica"), 2, expect=('unknown field "spec.replica"',)),
    Case("unknown-backend-field", (*B, "colour"), "blue", expect=('unknown field "spec.backend.colour"',)),
]
# CEL rules with a written case: schema location (dotted, "<root>" for the object) -> case ids.
CEL_CASES = {
    "<root>": ("name-too-long", "name-with-dot", "name-leading-digit"),
    "spec.proxy": ("node-port-with-cluster-ip",),
    "spec.backend.env[]": ("env-value-and-value-from",),
    "spec.backend.envFrom[]": ("env-from-both",),
    "spec.backend.resources.requests": ("requests-unknown-resource",),
    "spec.backend.resources.limits": ("limits-unknown-resource",),
    "spec.backend.securityContext": ("root-without-run-as-non-root-false",),
    "spec.backend.readiness": ("exec-readiness-without-command", "command-with-http-readiness"),
    "spec.scaleToZero": ("held-requests-over-the-memory-budget",),
}


# --- cases derived from the CRD's schema ------------------------------------------------------------------


def _crd_schema() -> dict[str, Any] | None:
    if not sapi.CRD_PATH.is_file():
        return None
    for doc in yaml.safe_load_all(sapi.CRD_PATH.read_text()):
        if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
            for version in doc["spec"]["versions"]:
                if version["name"] == kube.VERSION:
                    schema = version["schema"]["openAPIV3Schema"]
                    assert isinstance(schema, dict)
                    return schema
    return None


# RE2's Unicode classes that the CRD's patterns use, as Python's re spells them (the C0 and C1 controls;
# the Unicode spaces).
_RE2_CLASSES = {
    r"\p{Cc}": r"\x00-\x1f\x7f-\x9f",
    r"\p{Z}": r"\x20\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000",
}


def _python_pattern(pattern: str) -> str:
    for name, chars in _RE2_CLASSES.items():
        pattern = pattern.replace(name, chars)
    return pattern


def _violating_string(pattern: str) -> str | None:
    for candidate in ("has space", "", " ", "ftp://x", "-x-", "UPPER", "x" * 300, "0"):
        if not re.search(_python_pattern(pattern), candidate):
            return candidate
    return None


def _walk(schema: dict[str, Any], path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    yield path, schema
    for key, sub in (schema.get("properties") or {}).items():
        yield from _walk(sub, (*path, key))


def _field_cases(path: tuple[str, ...], node: dict[str, Any]) -> list[Case]:
    """One violating value per rule on this field."""
    slug = "-".join(path[1:])
    cases: list[Case] = []
    if "minimum" in node:
        cases.append(Case(f"schema-{slug}-below-minimum", path, int(node["minimum"]) - 1))
    if "maximum" in node:
        cases.append(Case(f"schema-{slug}-above-maximum", path, int(node["maximum"]) + 1))
    if "enum" in node:
        cases.append(Case(f"schema-{slug}-not-in-enum", path, "NotAnAllowedValue"))
    if node.get("minLength", 0) > 0:
        cases.append(Case(f"schema-{slug}-too-short", path, ""))
    if "maxLength" in node:
        cases.append(Case(f"schema-{slug}-too-long", path, "x" * (int(node["maxLength"]) + 1)))
    if "pattern" in node:
        bad = _violating_string(node["pattern"])
        if bad is not None:
            cases.append(Case(f"schema-{slug}-pattern", path, bad))
    if node.get("type") == "integer":
        cases.append(Case(f"schema-{slug}-not-integer", path, "1x"))
    return cases


def _schema_cases(schema: dict[str, Any] | None) -> list[Case]:
    spec_schema = (schema or {}).get("properties", {}).get("spec")
    if spec_schema is None:
        return []
    cases: list[Case] = []
    for path, node in _walk(spec_schema, S):
        if path != S:
            cases += _field_cases(path, node)
        slug = "-".join(path[1:]) or "spec"
        cases += [Case(f"schema-{slug}-missing-{r}", (*path, r)) for r in node.get("required", [])]
    return cases


def _walk_with_items(schema: dict[str, Any], where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every node, list items too ("spec.backend.env[]"), for the CEL rules anywhere in the schema."""
    yield where, schema
    for key, sub in (schema.get("properties") or {}).items():
        yield from _walk_with_items(sub, f"{where}.{key}" if where else key)
    if isinstance(schema.get("items"), dict):
        yield from _walk_with_items(schema["items"], f"{where}[]")


def _cel_rules(schema: dict[str, Any] | None) -> list[tuple[str, str]]:
    if schema is None:
        return []
    return [
        (where or "<root>", rule["rule"])
        for where, node in _walk_with_items(schema, "")
        for rule in node.get("x-kubernetes-validations", [])
    ]


SCHEMA = _crd_schema()
CASES = WRITTEN + _schema_cases(SCHEMA)


def _create_dry_run(obj: dict[str, Any]) -> tuple[int, str]:
    result = kube.kubectl(
        "create", "--dry-run=server", "--validate=strict", "-f", "-", "-o", "name",
        input=json.dumps(obj), check=False,
    )  # fmt: skip
    return result.returncode, result.stderr + result.stdout


def _base(ns: str) -> dict[str, Any]:
    obj = sapi.manifest(ns, name="e2e-validation", replicas=2)
    return copy.deepcopy(obj)


def test_crd_exists() -> None:
    assert SCHEMA is not None, f"{sapi.CRD_PATH} with version {kube.VERSION} is missing"


def test_the_sample_is_accepted(module_namespace: str) -> None:
    """The control: without the broken thing, the same request passes."""
    code, output = _create_dry_run(_base(module_namespace))
    assert code == 0, f"the unmodified sample was refused: {output}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused(module_namespace: str, case: Case) -> None:
    obj = _base(module_namespace)
    case.apply_to(obj)
    code, output = _create_dry_run(obj)
    assert code != 0, f"accepted: {json.dumps(obj['spec'])}"
    missing = [e for e in case.expected() if e not in output]
    assert not missing, f"refused, but the message does not name {missing}: {output.strip()}"


def test_every_cel_rule_has_a_case() -> None:
    ids = {c.id for c in WRITTEN}
    uncovered = [f"{where}: {rule}" for where, rule in _cel_rules(SCHEMA) if where not in CEL_CASES]
    assert not uncovered, f"CEL rules without a written case in {__name__}: {uncovered}"
    assert all(set(cases) <= ids for cases in CEL_CASES.values())
