"""The CRD file itself: subresources, printer columns, required fields, bounds, defaults, CEL rules."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from scaledapi_operator import spec as spec_module
from scaledapi_operator.builders.common import Owner, backend_name, proxy_name, proxy_status_name
from scaledapi_operator.container_spec import (
    CRD_PRINTABLE,
    MAX_ARGUMENT_LENGTH,
    MAX_ARGUMENTS,
    READINESS_TYPES,
)
from scaledapi_operator.spec import parse_spec
from scaledapi_operator.spec_errors import SpecError
from scaledapi_operator.status import Observed, compute_status
from scaledapi_operator.weights import Split

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "manifests" / "crd.yaml").read_text())
    return loaded


@pytest.fixture(scope="module")
def version(crd: dict[str, Any]) -> dict[str, Any]:
    versions = crd["spec"]["versions"]
    assert [v["name"] for v in versions] == ["v1alpha1"]
    result: dict[str, Any] = versions[0]
    return result


def schema(version: dict[str, Any], *path: str) -> dict[str, Any]:
    node: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    for key in path:
        node = node["properties"][key]
    return node


def test_names(crd: dict[str, Any]) -> None:
    assert crd["metadata"]["name"] == "scaledapis.scaledapi.dev"
    assert crd["spec"]["group"] == "scaledapi.dev"
    assert crd["spec"]["scope"] == "Namespaced"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["singular"]) == ("ScaledApi", "scaledapis", "scaledapi")
    assert names["shortNames"] == ["sapi"]


def test_subresources(version: dict[str, Any]) -> None:
    assert version["served"] is True and version["storage"] is True
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    assert schema(version, "status", "selector")["type"] == "string"


def test_printer_columns(version: dict[str, Any]) -> None:
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert columns["Desired"]["jsonPath"] == ".spec.replicas"
    assert columns["Ready"]["jsonPath"] == ".status.readyReplicas"
    assert columns["URL"]["jsonPath"] == ".status.url"
    assert columns["Canary"]["jsonPath"] == ".status.weights.canary"
    assert (columns["Age"]["jsonPath"], columns["Age"]["type"]) == (".metadata.creationTimestamp", "date")


def test_required_fields(version: dict[str, Any]) -> None:
    assert schema(version)["required"] == ["spec"]
    assert schema(version, "spec")["required"] == ["backend", "proxy"]
    assert schema(version, "spec", "backend")["required"] == ["image"]
    assert schema(version, "spec", "proxy")["required"] == ["image"]
    assert schema(version, "spec", "canary")["required"] == ["image", "weight"]


BOUNDS = [
    (("replicas",), 0, 50, 1),
    (("backend", "port"), 1, 65535, 5252),
    (("backend", "terminationDelaySeconds"), 0, 60, 5),
    (("backend", "gracefulShutdownSeconds"), 1, 300, 20),
    (("proxy", "replicas"), 1, 10, 1),
    (("proxy", "port"), 1, 65535, 8080),
    (("proxy", "nodePort"), 30000, 32767, None),
    (("proxy", "workerProcesses"), 1, 8, 1),
    (("proxy", "nextUpstreamTries"), 1, 10, 3),
    (("proxy", "upstreamTimeoutSeconds"), 1, 300, 30),
    (("canary", "weight"), 0, 100, None),
    (("canary", "replicas"), 0, 50, 1),
    (("scaleToZero", "idleSeconds"), 5, 86400, None),
    (("scaleToZero", "wakeTimeoutSeconds"), 1, 300, 60),
]


@pytest.mark.parametrize(("path", "low", "high", "default"), BOUNDS)
def test_bounds_and_defaults(
    version: dict[str, Any], path: tuple[str, ...], low: int, high: int, default: int | None
) -> None:
    field = schema(version, "spec", *path)
    assert field["type"] == "integer"
    assert (field["minimum"], field["maximum"]) == (low, high)
    assert field.get("default") == default
    assert field["description"]


def test_enums_and_patterns(version: dict[str, Any]) -> None:
    for section in ("backend", "proxy", "canary"):
        if section != "canary":
            pull = schema(version, "spec", section, "imagePullPolicy")
            assert pull["enum"] == list(spec_module.PULL_POLICIES)
        image = schema(version, "spec", section, "image")
        assert image["pattern"] == rf"^{CRD_PRINTABLE}+$"
        assert image["maxLength"] == spec_module.MAX_IMAGE_LENGTH
    assert schema(version, "spec", "proxy", "serviceType")["enum"] == list(spec_module.SERVICE_TYPES)
    assert schema(version, "spec", "proxy", "serviceType")["default"] == "ClusterIP"
    assert schema(version, "spec", "proxy", "externalURL")["pattern"] == r"^https?://\S+$"
    assert schema(version, "spec", "backend", "greeting")["maxLength"] == spec_module.MAX_GREETING_LENGTH


# \p{Cc} and \p{Z} as Python's re spells them: the C0 and C1 controls; Zs, Zl and Zp.
_RE2_CLASSES = {
    r"\p{Cc}": r"\x00-\x1f\x7f-\x9f",
    r"\p{Z}": r"\x20\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000",
}


def as_python(re2: str) -> re.Pattern[str]:
    """A pattern of the CRD (Go's RE2, read by the API server) in Python's re, for the classes used here."""
    for name, chars in _RE2_CLASSES.items():
        re2 = re2.replace(name, chars)
    assert r"\p" not in re2, f"a Unicode class this test cannot translate: {re2}"
    # RE2's \s is [\t\n\f\r ] only; Python's is wider, but the classes above already hold the rest. RE2's
    # $ is the end of the text; Python's also matches before a final newline.
    re2 = re2.replace(r"\s", r"\t\n\f\r ")
    return re.compile(re2[:-1] + r"\Z" if re2.endswith("$") else re2)


# Every character up to U+3100 (the controls, the Unicode spaces) and a few beyond.
CHARACTERS = [chr(c) for c in range(0x3100)] + ["\ufeff", "\U0001f600", "\U000e0001"]


def body_with(backend: dict[str, Any]) -> dict[str, Any]:
    return {"backend": {"image": "b", **backend}, "proxy": {"image": "n"}}


def parses(body: dict[str, Any]) -> bool:
    try:
        parse_spec(body)
    except SpecError:
        return False
    return True


def test_images_refuse_whitespace_and_control_characters_as_the_parser_does(version: dict[str, Any]) -> None:
    for section in ("backend", "proxy", "canary"):
        pattern = as_python(schema(version, "spec", section, "image")["pattern"])
        for char in CHARACTERS:
            image = f"registry.example/api{char}:1"
            crd_says = pattern.search(image) is not None
            assert crd_says == parses(body_with({"image": image})), (section, hex(ord(char)))
            if char in " \t\n\r\x00\x1b\x7f\x85\xa0\u2028":
                assert not crd_says, hex(ord(char))
        assert pattern.search("registry.example:5000/team/api@sha256:" + "a" * 64)
        # RE2's $ is the end of the text; a `match` of Python's re would let one final newline through.
        assert not pattern.search("api:1\n") and not parses(body_with({"image": "api:1\n"}))


@pytest.mark.parametrize("check", ["readiness", "liveness"])
def test_check_paths_refuse_whitespace_and_control_characters_as_the_parser_does(
    version: dict[str, Any], check: str
) -> None:
    pattern = as_python(schema(version, "spec", "backend", check, "path")["pattern"])
    for char in CHARACTERS:
        path = f"/health{char}z"
        crd_says = pattern.search(path) is not None
        assert crd_says == parses(body_with({check: {"path": path}})), (check, hex(ord(char)))
    for path, good in [
        ("/", True),
        ("/healthz?full=1", True),
        ("/a b", False),
        ("/a\nb", False),
        ("/healthz\n", False),
        ("healthz", False),
    ]:
        assert (pattern.search(path) is not None) == good == parses(body_with({check: {"path": path}})), path


def crd_allows_quantity(node: dict[str, Any], amount: Any) -> bool:
    """An int-or-string quantity of the CRD: a string matches the pattern within maxLength, an integer
    is at least the minimum (the API server checks each only on its own type)."""
    if isinstance(amount, int):
        return bool(amount >= node["minimum"])
    return len(amount) <= node["maxLength"] and re.search(node["pattern"], amount) is not None


QUANTITIES = [
    (-1, False),
    (0, True),
    (2, True),
    ("500m", True),
    ("-1", False),
    ("1" * 65, False),
    ("1Mi", True),
]


def test_quantities_refuse_negative_integers_as_the_parser_does(version: dict[str, Any]) -> None:
    resources = schema(version, "spec", "backend", "resources")["properties"]
    for group in ("requests", "limits"):
        assert resources[group]["maxProperties"] == 3
        node = resources[group]["additionalProperties"]
        assert (node["x-kubernetes-int-or-string"], node["minimum"]) == (True, 0)
        for amount, good in QUANTITIES:
            crd_says = crd_allows_quantity(node, amount)
            assert crd_says == good == parses(body_with({"resources": {group: {"cpu": amount}}})), amount
    env = schema(version, "spec", "backend", "env")["items"]["properties"]["valueFrom"]["properties"]
    divisor = env["resourceFieldRef"]["properties"]["divisor"]
    assert (divisor["x-kubernetes-int-or-string"], divisor["minimum"]) == (True, 0)
    for amount, good in QUANTITIES:
        ref = {"resource": "limits.memory", "divisor": amount}
        env_var = {"name": "MEM", "valueFrom": {"resourceFieldRef": ref}}
        assert crd_allows_quantity(divisor, amount) == good == parses(body_with({"env": [env_var]})), amount


def test_every_spec_field_has_a_description(version: dict[str, Any]) -> None:
    def walk(node: dict[str, Any], path: str) -> None:
        for name, child in (node.get("properties") or {}).items():
            assert child.get("description"), f"{path}.{name} has no description"
            walk(child, f"{path}.{name}")

    walk(schema(version, "spec"), "spec")


def test_node_port_cel_rule(version: dict[str, Any]) -> None:
    rules = schema(version, "spec", "proxy")["x-kubernetes-validations"]
    assert len(rules) == 1
    rule = rules[0]
    assert "has(self.nodePort)" in rule["rule"]
    assert "NodePort" in rule["rule"] and "LoadBalancer" in rule["rule"]
    assert rule["fieldPath"] == ".nodePort"
    assert "nodePort" in rule["message"]


def test_readiness_exec_command_and_its_cel_rule(version: dict[str, Any]) -> None:
    readiness = schema(version, "spec", "backend", "readiness")
    assert readiness["properties"]["type"]["enum"] == list(READINESS_TYPES)
    command = readiness["properties"]["command"]
    assert (command["type"], command["minItems"], command["maxItems"]) == ("array", 1, MAX_ARGUMENTS)
    assert command["items"] == {"type": "string", "maxLength": MAX_ARGUMENT_LENGTH}
    assert "command" not in schema(version, "spec", "backend", "liveness")["properties"]
    [rule] = readiness["x-kubernetes-validations"]
    assert rule["fieldPath"] == ".command"
    assert "readiness.command" in rule["message"] and "Exec" in rule["message"]
    # The rule, as CEL evaluates it on a defaulted object, and the parser agree on every combination.
    assert rule["rule"] == "has(self.command) == (has(self.type) && self.type == 'Exec')"
    for kind, given in itertools.product(READINESS_TYPES, (False, True)):
        section = {"type": kind, **({"command": ["true"]} if given else {})}
        allowed = given == (kind == "Exec")
        body = {"backend": {"image": "b", "readiness": section}, "proxy": {"image": "n"}}
        if allowed:
            parse_spec(body)
        else:
            with pytest.raises(SpecError, match=r"^spec\.backend\.readiness\.command"):
                parse_spec(body)


# --- metadata.name: refused up front when a child could never be made ------------------------------

# The forms a rule on metadata.name may take here, so that this module can evaluate them (CEL's
# `matches` is RE2; these patterns mean the same in Python's re).
_SIZE_RULE = re.compile(r"^size\(self\.metadata\.name\) <= (\d+)$")
_MATCHES_RULE = re.compile(r"^self\.metadata\.name\.matches\('([^']*)'\)$")
DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS_1035_MAX = 63
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")  # NAME is the instance label


def name_rules(version: dict[str, Any]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = schema(version)["x-kubernetes-validations"]
    return [r for r in rules if "self.metadata.name" in r["rule"]]


def name_allowed(version: dict[str, Any], name: str) -> list[str]:
    """Evaluate the CRD's rules on metadata.name; returns the messages of the rules that refuse it."""
    refused = []
    for rule in name_rules(version):
        size, matches = _SIZE_RULE.match(rule["rule"]), _MATCHES_RULE.match(rule["rule"])
        if size is not None:
            ok = len(name) <= int(size.group(1))
        elif matches is not None:
            ok = re.search(matches.group(1), name) is not None
        else:
            raise AssertionError(f"a rule on metadata.name this test cannot evaluate: {rule['rule']}")
        if not ok:
            refused.append(rule["message"])
    return refused


def children(name: str) -> list[str]:
    owner = Owner(name=name, namespace="ns", uid="u")
    return [backend_name(owner), proxy_name(owner), proxy_status_name(owner)]


def workable(name: str) -> bool:
    """Every child name a DNS-1035 label (what Services need) and NAME a label value."""
    labels_ok = all(DNS_1035_LABEL.fullmatch(c) and len(c) <= DNS_1035_MAX for c in children(name))
    return labels_ok and bool(LABEL_VALUE.fullmatch(name)) and len(name) <= DNS_1035_MAX


def test_name_rules_name_the_field(version: dict[str, Any]) -> None:
    rules = name_rules(version)
    assert len(rules) >= 2
    for rule in rules:
        assert "metadata.name" in rule["message"]
        assert "fieldPath" not in rule  # metadata has no declared properties to point into
        assert rule["reason"] == "FieldValueInvalid"


ACCEPTED = ["a", "hello", "demo-1", "x9", "a-b-c", "n" * 50]
REFUSED = [
    ("9lives", "letter"),  # Service 9lives-backend is not a DNS-1035 label
    ("1", "letter"),
    ("-a", "letter"),
    ("a-", "letter"),
    ("e2e.validation", "no dots"),
    ("Hello", "lowercase"),
    ("a_b", "letter"),
    ("n" * 51, "50"),
    ("n" * 56, "50"),
    ("n" * 253, "50"),
]


@pytest.mark.parametrize("name", ACCEPTED)
def test_a_good_name_passes_and_every_child_name_is_a_dns_1035_label(
    version: dict[str, Any], name: str
) -> None:
    assert name_allowed(version, name) == []
    assert workable(name), children(name)


@pytest.mark.parametrize(("name", "said"), REFUSED)
def test_a_name_that_could_never_work_is_refused(version: dict[str, Any], name: str, said: str) -> None:
    messages = name_allowed(version, name)
    assert messages, f"{name!r} passes the CRD"
    assert any(said in m for m in messages), messages
    # ... and it is refused because some child (or the instance label) could not be made with it.
    assert not workable(name)


DNS_1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def test_the_rules_refuse_exactly_the_names_that_cannot_work(version: dict[str, Any]) -> None:
    """Over every name of up to 3 characters from a telling alphabet, and long ones around the limit,
    that the API server takes as an object name (a DNS-1123 subdomain): the CRD accepts a name if and
    only if every child can be made with it."""
    short = ["".join(p) for n in range(1, 4) for p in itertools.product("a9-.B_", repeat=n)]
    long = [f"{head}{'n' * size}" for head in ("", "9", "n.") for size in range(45, 58)]
    names = [n for n in short + long if DNS_1123_SUBDOMAIN.fullmatch(n)]
    assert len(names) > 50
    wrong = [n for n in names if (not name_allowed(version, n)) != workable(n)]
    assert not wrong, f"the CRD and the children disagree on {wrong[:10]}"


def test_the_longest_name_still_fits_the_longest_child(version: dict[str, Any]) -> None:
    longest = next(n for n in range(DNS_1035_MAX, 0, -1) if not name_allowed(version, "n" * n))
    assert max(len(c) for c in children("n" * longest)) == DNS_1035_MAX
    assert name_allowed(version, "n" * (longest + 1))


def test_defaults_agree_with_the_parser(version: dict[str, Any]) -> None:
    """Apply the CRD's defaults to a minimal spec the way the API server would; the parser must agree."""

    def defaulted(node: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
        result = dict(value)
        for name, child in (node.get("properties") or {}).items():
            if name not in result and "default" in child:
                result[name] = child["default"]
            if child.get("type") == "object" and name in result:
                result[name] = defaulted(child, result[name])
        return result

    minimal = {"backend": {"image": "b"}, "proxy": {"image": "n"}}
    assert parse_spec(defaulted(schema(version, "spec"), minimal)) == parse_spec(minimal)
    # Sections given empty get the same defaults from the API server as from the parser.
    sections: dict[str, dict[str, Any]] = {"readiness": {}, "liveness": {}, "securityContext": {}}
    empty = {"backend": {"image": "b", **sections}, "proxy": {"image": "n"}}
    assert parse_spec(defaulted(schema(version, "spec"), empty)) == parse_spec(minimal)


def test_status_schema_holds_everything_the_operator_writes(version: dict[str, Any]) -> None:
    """Unknown status fields would be pruned, the status would never compare equal, and every
    reconcile would rewrite it."""
    canary, split = {"image": "b:2", "weight": 20}, Split(stable=80, canary=20)
    spec = parse_spec({"backend": {"image": "b"}, "proxy": {"image": "n"}})
    status, _ = compute_status(
        Observed(generation=1, spec=spec, selector="s", url="u", config_hash="h"), {}, "t"
    )
    properties = schema(version, "status")["properties"]
    assert set(status) <= set(properties)
    condition_fields = set(properties["conditions"]["items"]["properties"])
    for condition in status["conditions"]:
        assert set(condition) <= condition_fields
    assert properties["conditions"]["x-kubernetes-list-map-keys"] == ["type"]
    with_canary = parse_spec({"backend": {"image": "b"}, "proxy": {"image": "n"}, "canary": canary})
    observed = Observed(
        generation=1, spec=with_canary, selector="s", url="u", config_hash="h", split=split, asleep=True
    )
    status, _ = compute_status(observed, {}, "t")
    assert {"canary", "weights", "scaledToZero"} <= set(status) <= set(properties)
    assert set(status["canary"]) <= set(properties["canary"]["properties"])
    assert set(status["weights"]) <= set(properties["weights"]["properties"])


def test_every_cel_rule_has_a_written_e2e_case() -> None:
    """e2e 6 asks the API server with a written case for each CEL rule; a rule added without one fails
    here already, with no cluster (the check reads only the CRD file and the case list)."""
    from tests.e2e import test_06_validation as validation  # noqa: PLC0415 - a test module, loaded only here

    validation.test_every_cel_rule_has_a_case()
