"""What is held while asleep is bounded (spec.scaleToZero.maxHeldRequests, maxHeldBodyBytes): the CRD, the
parser, the settings line the nginx pod reads and the nginx config that enforces both limits first.
The activator's own enforcement: tests/integration/test_activator_limits.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from scaledapi_operator.builders.common import Owner
from scaledapi_operator.builders.proxy import proxy_deployment
from scaledapi_operator.nginx_conf import Endpoint, NginxSettings, render_nginx_conf
from scaledapi_operator.spec import parse_spec
from scaledapi_operator.spec_errors import SpecError
from scaledapi_proxy.zero import (
    DEFAULT_MAX_HELD_BODY_BYTES,
    DEFAULT_MAX_HELD_REQUESTS,
    HELD_MEMORY_BUDGET_BYTES,
    HELD_OVERHEAD_BYTES,
    MAX_HELD_BODY_BYTES_MAX,
    MAX_HELD_BODY_BYTES_MIN,
    MAX_HELD_REQUESTS_MAX,
    MAX_HELD_REQUESTS_MIN,
    ScaleToZero,
    held_memory_bytes,
    settings_of,
)

ROOT = Path(__file__).resolve().parents[2]
BASE = {"backend": {"image": "b"}, "proxy": {"image": "n"}}


def zero_spec(**fields: Any) -> dict[str, Any]:
    return {**BASE, "scaleToZero": {"idleSeconds": 30, **fields}}


@pytest.fixture(scope="module")
def zero_schema() -> dict[str, Any]:
    crd = yaml.safe_load((ROOT / "manifests" / "crd.yaml").read_text())
    node: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for key in ("spec", "scaleToZero"):
        node = node["properties"][key]
    return node


# --- the CRD and the parser ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "low", "high", "default"),
    [
        ("maxHeldRequests", MAX_HELD_REQUESTS_MIN, MAX_HELD_REQUESTS_MAX, DEFAULT_MAX_HELD_REQUESTS),
        ("maxHeldBodyBytes", MAX_HELD_BODY_BYTES_MIN, MAX_HELD_BODY_BYTES_MAX, DEFAULT_MAX_HELD_BODY_BYTES),
    ],
)
def test_the_crd_and_the_parser_share_bounds_and_defaults(
    zero_schema: dict[str, Any], field: str, low: int, high: int, default: int
) -> None:
    node = zero_schema["properties"][field]
    assert node["type"] == "integer" and node["description"]
    assert (node["minimum"], node["maximum"], node["default"]) == (low, high, default)
    budget_ok = {"maxHeldRequests": 1, "maxHeldBodyBytes": MAX_HELD_BODY_BYTES_MIN}
    for value in (low, high):
        parse_spec(zero_spec(**{**budget_ok, field: value}))
    for value in (low - 1, high + 1):
        with pytest.raises(SpecError, match=field):
            parse_spec(zero_spec(**{**budget_ok, field: value}))


def test_defaults_fit_well_in_the_nginx_containers_memory() -> None:
    zero = parse_spec(zero_spec()).scale_to_zero
    assert zero == ScaleToZero(30, 60, DEFAULT_MAX_HELD_REQUESTS, DEFAULT_MAX_HELD_BODY_BYTES)
    container = proxy_deployment(Owner(name="demo", namespace="ns", uid="u"), parse_spec(zero_spec()))[
        "spec"
    ]["template"]["spec"]["containers"][0]
    limit = container["resources"]["limits"]["memory"]
    assert limit.endswith("Mi")
    limit_bytes = int(limit[:-2]) * 1024 * 1024
    assert limit_bytes // 2 >= HELD_MEMORY_BUDGET_BYTES  # the other half for nginx and the reloader
    assert held_memory_bytes(DEFAULT_MAX_HELD_REQUESTS, DEFAULT_MAX_HELD_BODY_BYTES) <= limit_bytes // 4
    # nginx's own limit while awake (client_max_body_size 1m) is the most a held body may be.
    assert MAX_HELD_BODY_BYTES_MAX == 1024 * 1024


# The one form the budget rule has, so that this module can evaluate it as the API server would.
_BUDGET_RULE = re.compile(
    r"^\(has\(self\.maxHeldRequests\) \? self\.maxHeldRequests : (\d+)\) \* "
    r"\(\(has\(self\.maxHeldBodyBytes\) \? self\.maxHeldBodyBytes : (\d+)\) \+ (\d+)\) <= (\d+)$"
)


def budget_rule_allows(zero_schema: dict[str, Any], section: dict[str, int]) -> bool:
    (rule,) = zero_schema["x-kubernetes-validations"]
    found = _BUDGET_RULE.match(rule["rule"])
    assert found, f"a budget rule this test cannot evaluate: {rule['rule']}"
    held_default, body_default, overhead, budget = (int(g) for g in found.groups())
    held = section.get("maxHeldRequests", held_default)
    body = section.get("maxHeldBodyBytes", body_default)
    return held * (body + overhead) <= budget


def test_the_budget_rule_names_its_field_and_uses_the_shared_constants(zero_schema: dict[str, Any]) -> None:
    (rule,) = zero_schema["x-kubernetes-validations"]
    found = _BUDGET_RULE.match(rule["rule"])
    assert found is not None
    assert [int(g) for g in found.groups()] == [
        DEFAULT_MAX_HELD_REQUESTS,
        DEFAULT_MAX_HELD_BODY_BYTES,
        HELD_OVERHEAD_BYTES,
        HELD_MEMORY_BUDGET_BYTES,
    ]
    assert rule["fieldPath"] == ".maxHeldRequests"
    assert "maxHeldRequests" in rule["message"] and "maxHeldBodyBytes" in rule["message"]


@pytest.mark.parametrize("held", [1, 2, 32, 56, 57, 64, 256, 500, 1000])
@pytest.mark.parametrize("body", [1024, 4096, 65536, 131072, 1048576])
def test_the_crd_rule_and_the_parser_refuse_the_same_budgets(
    zero_schema: dict[str, Any], held: int, body: int
) -> None:
    section = {"maxHeldRequests": held, "maxHeldBodyBytes": body}
    try:
        parse_spec(zero_spec(**section))
    except SpecError as exc:
        assert exc.field == "spec.scaleToZero.maxHeldRequests"
        parsed = False
    else:
        parsed = True
    assert parsed == budget_rule_allows(zero_schema, section)
    if parsed:
        render_nginx_conf(NginxSettings(scale_to_zero=ScaleToZero(30, 60, held, body)), [])
    else:
        with pytest.raises(ValueError, match="max_held_requests"):
            render_nginx_conf(NginxSettings(scale_to_zero=ScaleToZero(30, 60, held, body)), [])


def test_the_largest_body_can_still_be_held_by_some() -> None:
    """The worst case e2e 20c floods: 1 MiB bodies, as many held as the budget allows."""
    most = HELD_MEMORY_BUDGET_BYTES // (MAX_HELD_BODY_BYTES_MAX + HELD_OVERHEAD_BYTES)
    assert most == 60
    parse_spec(zero_spec(maxHeldRequests=most, maxHeldBodyBytes=MAX_HELD_BODY_BYTES_MAX))
    with pytest.raises(SpecError, match="67108864"):
        parse_spec(zero_spec(maxHeldRequests=most + 1, maxHeldBodyBytes=MAX_HELD_BODY_BYTES_MAX))


# --- the settings line ----------------------------------------------------------------------------------


def test_the_settings_line_carries_the_limits() -> None:
    zero = ScaleToZero(
        idle_seconds=30, wake_timeout_seconds=20, max_held_requests=7, max_held_body_bytes=2048
    )
    assert zero.settings_line() == (
        "# scaledapi scale-to-zero: idle_seconds=30 wake_timeout_seconds=20"
        " max_held_requests=7 max_held_body_bytes=2048"
    )
    for endpoints in ([], [Endpoint("10.0.0.7", 5252)]):
        assert settings_of(render_nginx_conf(NginxSettings(scale_to_zero=zero), endpoints)) == zero


def test_a_line_without_the_limits_means_their_defaults() -> None:
    """An older operator's config, read by a newer nginx pod."""
    text = "# scaledapi scale-to-zero: idle_seconds=30 wake_timeout_seconds=20\nworker_processes 1;\n"
    assert settings_of(text) == ScaleToZero(30, 20, DEFAULT_MAX_HELD_REQUESTS, DEFAULT_MAX_HELD_BODY_BYTES)
    assert settings_of(text.replace("20\n", "20 max_held_requests=7\n")) is None  # half a line: not ours


# --- the nginx config -----------------------------------------------------------------------------------


def test_asleep_nginx_refuses_past_the_cap_and_a_larger_body_at_once() -> None:
    zero = ScaleToZero(30, 20, max_held_requests=7, max_held_body_bytes=2048)
    asleep = render_nginx_conf(NginxSettings(scale_to_zero=zero), [])
    location = asleep[
        asleep.index("        location / {") : asleep.index("        }", asleep.index("location / {"))
    ]
    assert "limit_conn scaledapi_held 7;" in location
    assert "limit_conn_status 503;" in location
    assert "client_max_body_size 2048;" in location
    assert asleep.count("limit_conn_zone $server_port zone=scaledapi_held:64k;") == 1
    assert "error_page 503 @held_full;" in asleep and "error_page 413 @too_large;" in asleep
    held_full = asleep[asleep.index("location @held_full {") : asleep.index("location @too_large {")]
    assert "add_header Retry-After 1 always;" in held_full
    assert '"reason":"7 requests are held already while the backend wakes up"' in held_full
    too_large = asleep[asleep.index("location @too_large {") :]
    assert "return 413" in too_large and "at most 2048 bytes" in too_large
    # Both refusals still count as a request: their datagram wakes the backend and feeds the metrics.
    for named in (held_full, too_large):
        assert (
            "access_log syslog:server=unix:/tmp/nginx/activity.sock,nohostname scaledapi_activity;" in named
        )


def test_awake_nginx_has_no_cap_and_nginxs_own_body_limit() -> None:
    zero = ScaleToZero(30, 20, max_held_requests=7, max_held_body_bytes=2048)
    awake = render_nginx_conf(NginxSettings(scale_to_zero=zero), [Endpoint("10.0.0.7", 5252)])
    assert "limit_conn" not in awake and "client_max_body_size" not in awake and "@held_full" not in awake


@pytest.mark.parametrize(("held", "connections"), [(None, 1024), (256, 1024), (384, 1024), (1000, 2256)])
def test_a_worker_has_connections_for_every_held_request_twice(held: int | None, connections: int) -> None:
    zero = None if held is None else ScaleToZero(30, 20, max_held_requests=held, max_held_body_bytes=1024)
    for endpoints in ([], [Endpoint("10.0.0.7", 5252)]):
        text = render_nginx_conf(NginxSettings(scale_to_zero=zero), endpoints)
        assert f"    worker_connections {connections};" in text
