"""The CRD file itself: subresources, printer columns, required fields, bounds, defaults, CEL rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from scaledapi_operator import spec as spec_module
from scaledapi_operator.spec import parse_spec
from scaledapi_operator.status import Observed, compute_status

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
    assert (columns["Age"]["jsonPath"], columns["Age"]["type"]) == (".metadata.creationTimestamp", "date")


def test_required_fields(version: dict[str, Any]) -> None:
    assert schema(version)["required"] == ["spec"]
    assert schema(version, "spec")["required"] == ["backend", "proxy"]
    assert schema(version, "spec", "backend")["required"] == ["image"]
    assert schema(version, "spec", "proxy")["required"] == ["image"]


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
    for section in ("backend", "proxy"):
        assert schema(version, "spec", section, "imagePullPolicy")["enum"] == list(spec_module.PULL_POLICIES)
        image = schema(version, "spec", section, "image")
        assert image["pattern"] == r"^\S+$"
        assert image["maxLength"] == spec_module.MAX_IMAGE_LENGTH
    assert schema(version, "spec", "proxy", "serviceType")["enum"] == list(spec_module.SERVICE_TYPES)
    assert schema(version, "spec", "proxy", "serviceType")["default"] == "ClusterIP"
    assert schema(version, "spec", "proxy", "externalURL")["pattern"] == r"^https?://\S+$"
    assert schema(version, "spec", "backend", "greeting")["maxLength"] == spec_module.MAX_GREETING_LENGTH


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


def test_name_length_cel_rule(version: dict[str, Any]) -> None:
    rules = schema(version)["x-kubernetes-validations"]
    assert any("self.metadata.name" in r["rule"] and "metadata.name" in r["message"] for r in rules)


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


def test_status_schema_holds_everything_the_operator_writes(version: dict[str, Any]) -> None:
    """Unknown status fields would be pruned, the status would never compare equal, and every
    reconcile would rewrite it."""
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
