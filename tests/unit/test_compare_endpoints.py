"""Subset comparison of desired vs actual, and ready addresses from EndpointSlices."""

from __future__ import annotations

from typing import Any

from scaledapi_operator.compare import differences, hand_added, is_subset, undo_patch
from scaledapi_operator.endpoints import (
    SERVICE_NAME_LABEL,
    SLICE_CONTROLLER,
    SLICE_MANAGED_BY_LABEL,
    foreign_slices,
    ready_addresses,
    ready_endpoints,
    valid_address,
)
from scaledapi_operator.nginx_conf import Endpoint


def test_server_defaulted_extras_are_ignored() -> None:
    desired = {"spec": {"replicas": 2, "template": {"containers": [{"name": "c", "image": "i"}]}}}
    actual = {
        "metadata": {"resourceVersion": "7"},
        "spec": {
            "replicas": 2,
            "revisionHistoryLimit": 10,
            "template": {"containers": [{"name": "c", "image": "i", "terminationMessagePath": "/dev/x"}]},
        },
        "status": {"replicas": 2},
    }
    assert is_subset(desired, actual)
    assert differences(desired, actual) == []


def test_changed_scalar_is_drift() -> None:
    assert not is_subset({"spec": {"replicas": 2}}, {"spec": {"replicas": 5}})
    assert differences({"spec": {"replicas": 2}}, {"spec": {"replicas": 5}}) == [".spec.replicas"]


def test_missing_key_is_drift() -> None:
    assert differences({"a": {"b": 1}}, {"a": {}}) == [".a.b (missing)"]


def test_empty_values_match_what_the_api_server_leaves_out_but_false_does_not() -> None:
    """omitempty: a probe's initialDelaySeconds: 0, an env var's value: "", args: [] are not stored."""
    desired = {"probe": {"initialDelaySeconds": 0, "periodSeconds": 2}, "env": [{"name": "A", "value": ""}]}
    actual = {"probe": {"periodSeconds": 2}, "env": [{"name": "A"}]}
    assert is_subset(desired, actual)
    assert differences(desired, actual) == []
    assert is_subset({"args": [], "selector": {}}, {})
    # A pointer boolean left out is unset, not false: allowPrivilegeEscalation removed by hand is drift.
    assert not is_subset({"allowPrivilegeEscalation": False}, {})
    assert differences({"allowPrivilegeEscalation": False}, {}) == [".allowPrivilegeEscalation (missing)"]
    assert not is_subset({"probe": {"initialDelaySeconds": 0}}, {"probe": {"initialDelaySeconds": 5}})


def test_lists_compare_element_wise_and_by_length() -> None:
    desired = {"env": [{"name": "A", "value": "1"}]}
    assert is_subset(desired, {"env": [{"name": "A", "value": "1"}]})
    assert not is_subset(desired, {"env": [{"name": "A", "value": "2"}]})
    assert not is_subset(
        desired, {"env": [{"name": "A", "value": "1"}, {"name": "X", "value": "hand-added"}]}
    )
    assert not is_subset(desired, {"env": []})
    assert differences(desired, {"env": [{"name": "A", "value": "2"}]}) == [".env[0].value"]


def test_types_matter() -> None:
    assert not is_subset({"port": 80}, {"port": "80"})
    assert not is_subset({"flag": True}, {"flag": 1})
    assert not is_subset({"a": {}}, {"a": []})
    assert not is_subset(["x"], "x")
    assert is_subset({"emptyDir": {}}, {"emptyDir": {}})


def slice_(
    address_type: str, *endpoints: dict[str, Any], managed_by: str = SLICE_CONTROLLER
) -> dict[str, Any]:
    """A slice of NAME-backend as the EndpointSlice controller writes it (or another writer)."""
    labels = {SERVICE_NAME_LABEL: "hello-backend", SLICE_MANAGED_BY_LABEL: managed_by}
    return {"metadata": {"labels": labels}, "addressType": address_type, "endpoints": list(endpoints)}


def ep(address: str, ready: bool | None, pod: str | None = None, terminating: bool = False) -> dict[str, Any]:
    conditions: dict[str, Any] = {"terminating": terminating}
    if ready is not None:
        conditions["ready"] = ready
    endpoint: dict[str, Any] = {"addresses": [address], "conditions": conditions}
    if pod:
        endpoint["targetRef"] = {"kind": "Pod", "name": pod, "uid": f"uid-{pod}"}
    return endpoint


def test_only_ready_addresses_sorted_numerically() -> None:
    slices = [
        slice_("IPv4", ep("10.0.0.10", True, "a"), ep("10.0.0.9", True, "b"), ep("10.0.0.11", False, "c")),
        slice_("IPv4", ep("10.0.0.12", False, "d", terminating=True), ep("10.0.0.2", None, "e")),
    ]
    assert ready_addresses(slices) == ["10.0.0.9", "10.0.0.10"]
    assert ready_endpoints(slices, 5252) == [Endpoint("10.0.0.9", 5252), Endpoint("10.0.0.10", 5252)]


def test_duplicates_and_dual_stack_collapse_per_pod() -> None:
    slices = [
        slice_("IPv6", ep("fd00::5", True, "a")),
        slice_("IPv4", ep("10.0.0.5", True, "a")),
        slice_("IPv4", ep("10.0.0.5", True, "a")),
        slice_("FQDN", ep("example.com", True, "z")),
    ]
    assert ready_addresses(slices) == ["10.0.0.5"]


def test_no_slices_no_endpoints() -> None:
    assert ready_endpoints([], 5252) == []
    assert ready_addresses([{"addressType": "IPv4", "endpoints": None}]) == []


def test_each_pod_keeps_its_own_slices_port() -> None:
    """While a change of spec.backend.port rolls out, old pods (one slice) listen on the old port and
    new pods (another slice) on the new one: each upstream server uses its own slice's `http` port."""
    old = {**slice_("IPv4", ep("10.0.0.7", True, "old")), "ports": [{"name": "http", "port": 5252}]}
    new = {**slice_("IPv4", ep("10.0.0.3", True, "new")), "ports": [{"name": "http", "port": 6000}]}
    other = {**slice_("IPv4", ep("10.0.0.4", True, "x")), "ports": [{"name": "metrics", "port": 9000}]}
    assert ready_endpoints([old, new, other], 6000) == [
        Endpoint("10.0.0.3", 6000),
        Endpoint("10.0.0.4", 6000),  # no `http` port in its slice: the spec's port
        Endpoint("10.0.0.7", 5252),
    ]


def test_only_the_endpointslice_controllers_slices_count() -> None:
    """Anyone who may create EndpointSlices in the namespace can label one with NAME-backend's service
    name: its addresses must not become upstreams, whoever wrote it."""
    ours = slice_("IPv4", ep("10.0.0.5", True, "a"))
    forged = slice_("IPv4", ep("10.0.0.66", True, "x"), managed_by="someone")
    unlabelled = slice_("IPv4", ep("10.0.0.67", True, "y"))
    del unlabelled["metadata"]["labels"][SLICE_MANAGED_BY_LABEL]
    assert ready_endpoints([ours, forged, unlabelled], 5252) == [Endpoint("10.0.0.5", 5252)]
    assert ready_endpoints([forged, unlabelled], 5252) == []
    assert foreign_slices([ours, forged, unlabelled]) == [forged, unlabelled]


def test_addresses_must_be_plain_addresses_of_the_slices_family() -> None:
    assert valid_address("10.0.0.5", 4) == "10.0.0.5"
    assert valid_address("fd00:0::5", 6) == "fd00::5"  # canonical text
    for bad, version in [
        ("fe80::1%eth0", 6),  # a zone id: never pasted into nginx.conf
        ("fe80::1%25eth0", 6),
        ("10.0.0.5", 6),  # of the other family
        ("fd00::5", 4),
        ("10.0.0.5; include /etc/passwd", 4),
        ("", 4),
        (None, 4),
        (167772165, 4),  # an int is no address text
    ]:
        assert valid_address(bad, version) is None, bad
    slices = [
        slice_("IPv6", ep("fe80::1%eth0", True, "a"), ep("fd00::7", True, "b")),
        slice_("IPv4", ep("fd00::8", True, "c"), ep("10.0.0.9; x", True, "d"), ep("10.0.0.4", True, "e")),
    ]
    assert ready_endpoints(slices, 5252) == [Endpoint("10.0.0.4", 5252), Endpoint("fd00::7", 5252)]


def test_hand_added_fields_and_the_patch_that_removes_them() -> None:
    desired = {"kind": "Service", "spec": {"ports": [{"port": 80}], "selector": {"a": "b"}}}
    actual = {
        "kind": "Service",
        "spec": {"ports": [{"port": 80}], "selector": {"a": "b"}, "clusterIP": "10.0.0.1"}
        | {"externalIPs": ["203.0.113.9"], "loadBalancerSourceRanges": ["0.0.0.0/0"]},
    }
    added = hand_added(desired, actual)
    assert added == [("spec", "externalIPs"), ("spec", "loadBalancerSourceRanges")]
    patch = undo_patch(desired, added)
    assert patch["spec"] == {"ports": [{"port": 80}], "selector": {"a": "b"}} | {
        "externalIPs": None,
        "loadBalancerSourceRanges": None,
    }
    assert "externalIPs" not in desired["spec"]  # desired itself is not changed


def test_only_pod_template_and_service_specs_are_checked() -> None:
    desired = {"kind": "ConfigMap", "data": {"a": "1"}}
    assert hand_added(desired, {"kind": "ConfigMap", "data": {"a": "1", "b": "2"}}) == []


def serving_ep(address: str, pod: str, serving: bool) -> dict[str, Any]:
    """An endpoint of a terminating pod (never ready), still serving or not."""
    endpoint = ep(address, False, pod, terminating=True)
    endpoint["conditions"]["serving"] = serving
    return endpoint


def test_terminating_pods_still_serving_are_used_only_while_no_pod_is_ready() -> None:
    """As kube-proxy: one replica deleted under load keeps answering until its replacement is ready."""
    leaving = [slice_("IPv4", serving_ep("10.0.0.7", "old", True), serving_ep("10.0.0.8", "gone", False))]
    assert ready_endpoints(leaving, 5252) == [Endpoint("10.0.0.7", 5252)]
    replaced = [slice_("IPv4", serving_ep("10.0.0.7", "old", True), ep("10.0.0.3", True, "new"))]
    assert ready_endpoints(replaced, 5252) == [Endpoint("10.0.0.3", 5252)]
    assert ready_endpoints([slice_("IPv4", serving_ep("10.0.0.8", "gone", False))], 5252) == []
