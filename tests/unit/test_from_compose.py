"""scaledapi from-compose: the course's compose file converts exactly, each field maps as documented, what
cannot be mapped is one warning naming the field, errors name the file and the field; and the fixture's
API (tests/compose/back-end/server.py) answers as the e2e scenario expects."""

from __future__ import annotations

import copy
import http.client
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from scaledapi_operator.compose_files import load_compose, load_yaml
from scaledapi_operator.compose_mapping import (
    cpu_quantity,
    foreign_directives,
    memory_quantity,
    parse_nginx,
    proxied_ports,
)
from scaledapi_operator.compose_values import ComposeError
from scaledapi_operator.from_compose import Conversion, Options, cli, convert, main
from scaledapi_operator.spec import parse_spec

COMPOSE_DIR = Path(__file__).resolve().parents[1] / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
SERVER = COMPOSE_DIR / "back-end" / "server.py"
PREFIX = "scaledapi from-compose: "

EXPECTED: dict[str, Any] = {
    "apiVersion": "scaledapi.dev/v1alpha1",
    "kind": "ScaledApi",
    "metadata": {"name": "back-end"},
    "spec": {
        "replicas": 2,
        "backend": {
            "image": "course/back-end:1.0",
            "port": 5000,
            "args": ["python3", "server.py"],
            "workingDir": "/app",
            "env": [{"name": "PORT", "value": "5000"}],
            "readiness": {"type": "TCP"},
        },
        "proxy": {"image": "scaledapi/nginx:dev", "port": 8080},
    },
}
NGINX = {"nginx": {"image": "nginx", "ports": ["8080:80"]}}
BUILD_ONLY = (
    "services.back-end.image: required (the service has only build:; build and push the image, then give "
    "its name with --image)"
)
BUILD_WARNING = (
    "not mapped: services.back-end.build: ScaledApi runs an image and builds none: course/back-end:1.0 is "
    "used (build and push or load it)"
)


def fixture(options: Options | None = None) -> Conversion:
    return convert(load_compose(COMPOSE_FILE), "back-end", options or Options(), COMPOSE_DIR)


def convert_api(
    fields: dict[str, Any],
    others: dict[str, Any] | None = None,
    options: Options | None = None,
    compose_dir: Path = COMPOSE_DIR,
) -> Conversion:
    """Convert a service `api` (image and port given unless `fields` says otherwise) behind `others`."""
    service = {"image": "me/api:1", "expose": ["5000"], **fields}
    compose = {"services": {"api": {key: value for key, value in service.items() if value is not None}}}
    compose["services"].update(NGINX if others is None else others)
    return convert(compose, "api", options or Options(), compose_dir)


def backend(fields: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = convert_api(fields).manifest["spec"]["backend"]
    return spec


def texts(conversion: Conversion) -> list[str]:
    return [str(warning) for warning in conversion.warnings]


def warned_fields(conversion: Conversion) -> list[str]:
    return [warning.field for warning in conversion.warnings]


# --- the course's compose file ---------------------------------------------------------------------------


def test_the_course_fixture_converts_to_exactly_this_manifest() -> None:
    assert fixture().manifest == EXPECTED


def test_the_only_warning_of_the_fixture_is_that_build_is_not_used() -> None:
    # The nginx service's volume is its nginx.conf, which is the classic round robin: nothing lost.
    assert texts(fixture()) == [BUILD_WARNING]


def test_the_manifest_is_one_the_operator_accepts_with_a_non_root_tcp_checked_backend() -> None:
    spec = parse_spec(fixture(Options(node_port=30080)).manifest["spec"])
    container = spec.backend.container
    assert (container.readiness.type, container.liveness.type) == ("TCP", "TCP")
    assert container.security.run_as_non_root and container.security.run_as_user == 10001
    assert (spec.proxy.service_type, spec.proxy.node_port, spec.proxy.port) == ("NodePort", 30080, 8080)


def test_the_fixture_files_are_world_readable_and_the_image_sets_no_user() -> None:
    for path in (SERVER, COMPOSE_DIR / "back-end" / "Dockerfile", COMPOSE_DIR / "nginx.conf"):
        assert path.stat().st_mode & 0o444 == 0o444, path
    instructions = [
        line.split()[0]
        for line in (COMPOSE_DIR / "back-end" / "Dockerfile").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert "USER" not in instructions


# --- command line, environment, user, resources -------------------------------------------------------------


def test_entrypoint_is_the_command_and_command_the_args() -> None:
    spec = backend({"entrypoint": ["python3", "-u"], "command": ["server.py", "--port", 5000]})
    assert (spec["command"], spec["args"]) == (["python3", "-u"], ["server.py", "--port", "5000"])


def test_string_commands_are_split_as_a_shell_would() -> None:
    spec = backend({"entrypoint": '/bin/sh -c "exec python3 app.py"', "command": "--greeting 'hi there'"})
    assert spec["command"] == ["/bin/sh", "-c", "exec python3 app.py"]
    assert spec["args"] == ["--greeting", "hi there"]


def test_without_entrypoint_or_command_the_image_keeps_its_own() -> None:
    spec = backend({})
    assert "command" not in spec and "args" not in spec


def test_an_empty_entrypoint_is_not_mapped() -> None:
    conversion = convert_api({"entrypoint": []})
    assert "command" not in conversion.manifest["spec"]["backend"]
    assert warned_fields(conversion) == ["services.api.entrypoint"]


def test_unbalanced_quotes_in_a_command_are_an_error_naming_it() -> None:
    with pytest.raises(ComposeError, match=r"^services\.api\.command: cannot be split"):
        convert_api({"command": "echo 'unterminated"})


def test_environment_map_form_values_become_strings_as_compose_writes_them() -> None:
    env = backend({"environment": {"A": "x", "PORT": 5000, "DEBUG": True, "QUIET": False, "RATIO": 0.5}})[
        "env"
    ]
    assert env == [
        {"name": "A", "value": "x"},
        {"name": "PORT", "value": "5000"},
        {"name": "DEBUG", "value": "true"},
        {"name": "QUIET", "value": "false"},
        {"name": "RATIO", "value": "0.5"},
    ]


def test_environment_list_form_splits_at_the_first_equals_sign() -> None:
    env = backend({"environment": ["A=x", "URL=http://h/?a=b", "EMPTY=", "A=y"]})["env"]
    assert env == [
        {"name": "A", "value": "y"},  # a later entry of the same name wins, as in compose
        {"name": "URL", "value": "http://h/?a=b"},
        {"name": "EMPTY", "value": ""},
    ]


@pytest.mark.parametrize("environment", [["TOKEN", "A=x"], {"TOKEN": None, "A": "x"}])
def test_a_bare_variable_takes_its_value_from_the_host_so_it_is_not_mapped(environment: Any) -> None:
    conversion = convert_api({"environment": environment})
    assert conversion.manifest["spec"]["backend"]["env"] == [{"name": "A", "value": "x"}]
    assert warned_fields(conversion) == ["services.api.environment.TOKEN"]
    assert "compose takes it from the shell" in texts(conversion)[0]


def test_a_variable_name_kubernetes_refuses_is_not_mapped() -> None:
    conversion = convert_api({"environment": {"1BAD": "x"}})
    assert "env" not in conversion.manifest["spec"]["backend"]
    assert warned_fields(conversion) == ["services.api.environment.1BAD"]


@pytest.mark.parametrize(
    ("user", "context"),
    [
        ("1000", {"runAsUser": 1000, "runAsGroup": 1000}),
        (1000, {"runAsUser": 1000, "runAsGroup": 1000}),
        ("1000:2000", {"runAsUser": 1000, "runAsGroup": 2000}),
    ],
)
def test_a_numeric_user_is_the_security_context(user: Any, context: dict[str, int]) -> None:
    conversion = convert_api({"user": user})
    assert conversion.manifest["spec"]["backend"]["securityContext"] == context
    assert conversion.warnings == []


@pytest.mark.parametrize(("user", "group"), [("0", 0), ("root", 0), ("root:root", 0), ("0:1000", 1000)])
def test_root_is_kept_but_warned_that_it_leaves_pod_security_restricted(user: str, group: int) -> None:
    conversion = convert_api({"user": user})
    context = {"runAsUser": 0, "runAsGroup": group, "runAsNonRoot": False}
    assert conversion.manifest["spec"]["backend"]["securityContext"] == context
    [warning] = conversion.warnings
    assert warning.field == "services.api.user" and not warning.not_mapped
    assert 'Pod Security "restricted"' in warning.text
    parse_spec(conversion.manifest["spec"])  # runAsUser 0 comes with runAsNonRoot false, as the CRD asks


def test_a_user_name_is_not_mapped_and_the_default_uid_stays() -> None:
    conversion = convert_api({"user": "app"})
    assert "securityContext" not in conversion.manifest["spec"]["backend"]
    assert warned_fields(conversion) == ["services.api.user"]
    assert "uid 10001" in texts(conversion)[0]


def test_a_group_name_keeps_the_uid_and_warns() -> None:
    conversion = convert_api({"user": "1000:staff"})
    assert conversion.manifest["spec"]["backend"]["securityContext"] == {"runAsUser": 1000}
    assert warned_fields(conversion) == ["services.api.user"]


@pytest.mark.parametrize(("cpus", "quantity"), [("0.5", "500m"), (0.25, "250m"), (2, "2"), ("1.5", "1500m")])
def test_cpus_become_millicores(cpus: Any, quantity: str) -> None:
    assert cpu_quantity(cpus, "f") == quantity


@pytest.mark.parametrize(
    ("memory", "quantity"),
    [("256M", "256Mi"), ("256m", "256Mi"), ("256mb", "256Mi"), ("1g", "1Gi"), ("1GB", "1Gi"),
     ("512k", "512Ki"), ("1.5g", "1.5Gi"), ("100b", "100"), ("1048576", "1048576"), (1024, "1024")],
)  # fmt: skip
def test_memory_units_are_binary_as_in_compose(memory: Any, quantity: str) -> None:
    assert memory_quantity(memory, "f") == quantity


@pytest.mark.parametrize(
    ("name", "value"), [("cpus", "lots"), ("cpus", "0"), ("memory", "1x"), ("memory", "-1m")]
)
def test_a_resource_compose_would_refuse_is_an_error_naming_it(name: str, value: str) -> None:
    deploy = {"resources": {"limits": {name: value}}}
    with pytest.raises(ComposeError, match=rf"^services\.api\.deploy\.resources\.limits\.{name}: must be"):
        convert_api({"deploy": deploy})


def test_limits_and_reservations_become_limits_and_requests() -> None:
    resources = {"limits": {"cpus": "0.5", "memory": "256M", "pids": 100}, "reservations": {"memory": "64M"}}
    conversion = convert_api({"deploy": {"resources": resources}})
    expected = {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"memory": "64Mi"}}
    assert conversion.manifest["spec"]["backend"]["resources"] == expected
    assert warned_fields(conversion) == ["services.api.deploy.resources.limits.pids"]
    parse_spec(conversion.manifest["spec"])


def test_without_deploy_resources_the_crd_defaults_stay() -> None:
    assert "resources" not in backend({"deploy": {"replicas": 2}})


def test_a_relative_working_dir_is_not_mapped() -> None:
    conversion = convert_api({"working_dir": "app"})
    assert "workingDir" not in conversion.manifest["spec"]["backend"]
    assert warned_fields(conversion) == ["services.api.working_dir"]


# --- the port -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "port"),
    [
        ({"expose": ["5000"], "ports": ["8000:6000"], "environment": {"PORT": "7000"}}, 5000),
        ({"expose": [5000]}, 5000),
        ({"expose": ["5000/tcp"]}, 5000),
        ({"expose": None, "ports": ["8000:6000"], "environment": {"PORT": "7000"}}, 6000),
        ({"expose": None, "ports": ["6000"]}, 6000),
        ({"expose": None, "ports": ["127.0.0.1:8000:6000/tcp"]}, 6000),
        ({"expose": None, "ports": ["[::1]:8000:6000"]}, 6000),
        ({"expose": None, "ports": [{"target": 6000, "published": "8000"}]}, 6000),
        ({"expose": None, "environment": {"PORT": "7000"}}, 7000),
        ({"expose": None, "environment": ["PORT=7000"]}, 7000),
    ],
)
def test_the_port_is_expose_then_ports_then_the_port_variable(fields: dict[str, Any], port: int) -> None:
    assert backend(fields)["port"] == port


def test_without_any_port_the_error_names_expose() -> None:
    with pytest.raises(ComposeError, match=r"^services\.api\.expose: required"):
        convert_api({"expose": None, "environment": {"PORT": "${PORT}"}})


def test_a_port_range_is_an_error_naming_the_entry() -> None:
    with pytest.raises(ComposeError, match=r"^services\.api\.expose\[0\]: '5000-5001' is not a single port"):
        convert_api({"expose": ["5000-5001"]})


def test_further_ports_and_a_published_host_port_are_not_mapped() -> None:
    conversion = convert_api(
        {"expose": ["5000", "5000", "6000"], "ports": ["5000", "8000:5000", "9000:9000"]}
    )
    assert conversion.manifest["spec"]["backend"]["port"] == 5000
    assert warned_fields(conversion) == [
        "services.api.expose[2]",
        "services.api.ports[1]",
        "services.api.ports[2]",
    ]
    assert "host port 8000: the copies are not published" in texts(conversion)[1]


# --- the port from the proxy's nginx config, and --port ---------------------------------------------------

GO_API_CONF = "server {\n    listen 80;\n    location / {\n        proxy_pass http://backend:80;\n    }\n}\n"


def behind_nginx(
    tmp_path: Path, conf: str, backend: dict[str, Any], options: Options | None = None
) -> Conversion:
    """Convert service `backend` (no expose or ports unless given) behind an nginx that mounts `conf`."""
    (tmp_path / "nginx.conf").write_text(conf)
    proxy = {
        "image": "nginx",
        "volumes": ["./nginx.conf:/etc/nginx/conf.d/default.conf:ro"],
        "ports": ["80:80"],
        "depends_on": ["backend"],
    }
    compose = {"services": {"backend": {"image": "samples/go-api:1.0", **backend}, "proxy": proxy}}
    return convert(compose, "backend", options or Options(), tmp_path)


def test_a_go_api_with_no_expose_gets_its_port_from_the_proxy_pass(tmp_path: Path) -> None:
    conversion = behind_nginx(tmp_path, GO_API_CONF, {"build": "backend"})
    spec = conversion.manifest["spec"]
    assert (spec["backend"]["port"], spec["proxy"]["port"]) == (80, 80)
    assert spec["backend"]["readiness"] == {"type": "TCP"}
    assert texts(conversion) == [
        "services.proxy.volumes[0]: ./nginx.conf: spec.backend.port 80 is the port its proxy_pass sends "
        "services.backend to (which has no expose or ports)",
        "not mapped: services.backend.build: ScaledApi runs an image and builds none: samples/go-api:1.0 is "
        "used (build and push or load it)",
    ]


@pytest.mark.parametrize(
    ("conf", "port"),
    [
        ("server { location / { proxy_pass http://backend:8000/; } }", 8000),
        ("server { location / { proxy_pass http://backend; } }", 80),
        ("server { location /api/ { proxy_pass http://backend/api/; } }", 80),
        ("upstream app { server backend:9000; } server { location / { proxy_pass http://app; } }", 9000),
        ("upstream backend { server backend; } server { location / { proxy_pass http://backend; } }", 80),
        ("http { upstream u { server backend:7000 weight=2; server other:1; } "
         "server { location / { proxy_pass http://u/; } } }", 7000),
    ],
)  # fmt: skip
def test_the_port_is_read_from_proxy_pass_directly_or_through_an_upstream(
    tmp_path: Path, conf: str, port: int
) -> None:
    assert behind_nginx(tmp_path, conf, {}).manifest["spec"]["backend"]["port"] == port


def test_the_nginx_port_comes_after_expose_and_ports_and_before_the_port_variable(tmp_path: Path) -> None:
    conf = "server { location / { proxy_pass http://backend:8000; } }"
    assert behind_nginx(tmp_path, conf, {"expose": ["5000"]}).manifest["spec"]["backend"]["port"] == 5000
    assert behind_nginx(tmp_path, conf, {"ports": ["6000"]}).manifest["spec"]["backend"]["port"] == 6000
    with_variable = behind_nginx(tmp_path, conf, {"environment": {"PORT": "7000"}})
    assert with_variable.manifest["spec"]["backend"]["port"] == 8000


@pytest.mark.parametrize(
    "conf",
    [
        "server { location / { proxy_pass http://other:8000; } }",  # another service
        "server { location / { proxy_pass https://backend:8443; } }",  # not plain HTTP
        "server { set $u backend:8000; location / { proxy_pass http://$u; } }",  # a variable
        "server { location / { fastcgi_pass backend:9000; } }",
        "upstream app { server other:9000; } server { location / { proxy_pass http://app; } }",
        "server { location / { proxy_pass http://backend:99999; } }",
    ],
)
def test_a_config_that_does_not_send_plain_http_to_the_service_gives_no_port(
    tmp_path: Path, conf: str
) -> None:
    with pytest.raises(ComposeError, match=r"^services\.backend\.expose: required: .* or give --port\)$"):
        behind_nginx(tmp_path, conf, {})


def test_two_ports_for_the_service_are_an_error_asking_for_the_port_option(tmp_path: Path) -> None:
    conf = (
        "server { location / { proxy_pass http://backend:8000; } "
        "location /admin { proxy_pass http://backend:9000; } }"
    )
    message = (
        r"^services\.proxy\.volumes\[0\]: \./nginx\.conf: proxy_pass sends backend requests to ports "
        r"8000, 9000: give the API's port with --port$"
    )
    with pytest.raises(ComposeError, match=message):
        behind_nginx(tmp_path, conf, {})
    assert behind_nginx(tmp_path, conf, {}, Options(port=9000)).manifest["spec"]["backend"]["port"] == 9000


def test_the_port_option_wins_and_names_the_entries_it_leaves(tmp_path: Path) -> None:
    conversion = convert_api({"expose": ["5000", "6000"]}, options=Options(port=6000))
    assert conversion.manifest["spec"]["backend"]["port"] == 6000
    assert texts(conversion) == ["not mapped: services.api.expose[0]: the backend has one port, "
                                 "spec.backend.port: 6000"]  # fmt: skip
    assert (
        behind_nginx(tmp_path, GO_API_CONF, {}, Options(port=8080)).manifest["spec"]["backend"]["port"]
        == 8080
    )


@pytest.mark.parametrize("port", [0, 65536, -1])
def test_a_port_option_out_of_range_is_refused_naming_it(port: int) -> None:
    with pytest.raises(ComposeError, match=r"^--port: must be a whole number from 1 to 65535"):
        convert_api({}, options=Options(port=port))


@pytest.mark.parametrize("port", ["0", "65536", "80a", "²", "9" * 5000])
def test_the_port_option_on_the_command_line_is_a_usage_error_naming_it(
    capsys: pytest.CaptureFixture[str], port: str
) -> None:
    with pytest.raises(SystemExit) as raised:
        cli(["from-compose", str(COMPOSE_FILE), "back-end", "--port", port])
    assert raised.value.code == 2
    assert "argument --port: must be a whole number from 1 to 65535" in capsys.readouterr().err


def test_proxied_ports_reads_every_proxy_pass_to_the_service() -> None:
    conf = parse_nginx(
        "upstream a { server backend:1; server backend:2; } server { location / { proxy_pass http://a; } "
        "location /b { proxy_pass http://backend:3/x; } location /c { proxy_pass http://elsewhere:4; } }"
    )
    assert proxied_ports(conf, "backend") == {1, 2, 3}
    assert proxied_ports(conf, "elsewhere") == {4}


def test_a_direct_proxy_pass_without_a_port_is_round_robin_on_port_80() -> None:
    conf = parse_nginx("server { listen 80; location / { proxy_pass http://api; } }")
    assert foreign_directives(conf, "api", 80) == []
    assert foreign_directives(conf, "api", 8080) == ["location /: proxy_pass http://api"]


# --- the healthcheck as readiness ---------------------------------------------------------------------------

HTTP_CHECKS = [
    ["CMD", "curl", "-f", "http://localhost:5000/health"],
    ["CMD", "curl", "--fail", "http://127.0.0.1:5000/health"],
    ["CMD", "curl", "-fsS", "http://localhost:5000/health"],
    ["CMD", "/usr/bin/curl", "-s", "-f", "-o", "/dev/null", "-m", "2", "http://[::1]:5000/health"],
    ["CMD-SHELL", "curl -f http://localhost:5000/health || exit 1"],
    ["CMD-SHELL", "curl -sf 'http://localhost:5000/health' || exit"],
    "curl --fail --silent http://localhost:5000/health || false",
    ["CMD", "wget", "-q", "--spider", "http://localhost:5000/health"],
    ["CMD", "wget", "--no-verbose", "--tries=1", "--spider", "http://localhost:5000/health"],
    ["CMD-SHELL", "wget -qO- http://localhost:5000/health || exit 1"],
    ["CMD", "wget", "-O", "/dev/null", "http://localhost:5000/health"],
    ["CMD", "wget", "-q", "-O", "-", "-T", "3", "http://localhost:5000/health"],
    ["CMD", "sh", "-c", "curl -f http://localhost:5000/health || exit 1"],
]


@pytest.mark.parametrize("test", HTTP_CHECKS)
def test_a_local_url_check_that_fails_on_http_errors_becomes_http_readiness(test: Any) -> None:
    conversion = convert_api({"healthcheck": {"test": test}})
    backend = conversion.manifest["spec"]["backend"]
    assert backend["readiness"] == {"type": "HTTP", "path": "/health"}
    assert backend["liveness"] == {"type": "TCP"}  # as without a healthcheck: compose restarts no one for it
    assert conversion.warnings == []


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("http://localhost:5000", "/"),
        ("http://localhost:5000/", "/"),
        ("http://localhost:5000/a?b=c#top", "/a?b=c"),
    ],
)
def test_the_readiness_path_is_the_urls_path_and_query(url: str, path: str) -> None:
    backend_spec = backend({"healthcheck": {"test": ["CMD", "curl", "-f", url]}})
    assert backend_spec["readiness"]["path"] == path


def test_a_url_without_a_port_is_port_80() -> None:
    conversion = convert_api({"expose": ["80"], "healthcheck": {"test": "curl -f http://localhost/up"}})
    assert conversion.manifest["spec"]["backend"]["readiness"] == {"type": "HTTP", "path": "/up"}


EXEC_CHECKS = [
    (["CMD", "curl", "http://localhost:5000/health"], ["curl", "http://localhost:5000/health"]),  # no -f
    (["CMD", "curl", "-f", "https://localhost:5000/health"], ["curl", "-f", "https://localhost:5000/health"]),
    (["CMD", "curl", "-f", "http://db:5000/health"], ["curl", "-f", "http://db:5000/health"]),
    (["CMD", "curl", "-f", "-H", "X: y", "http://localhost:5000/"],
     ["curl", "-f", "-H", "X: y", "http://localhost:5000/"]),
    (["CMD-SHELL", "curl -f http://localhost:5000/ | grep ok"],
     ["/bin/sh", "-c", "curl -f http://localhost:5000/ | grep ok"]),
    (["CMD-SHELL", "curl -f http://localhost:$${PORT}/"], ["/bin/sh", "-c", "curl -f http://localhost:${PORT}/"]),
    ("pg_isready -U postgres", ["/bin/sh", "-c", "pg_isready -U postgres"]),
    (["CMD-SHELL", "redis-cli", "ping"], ["/bin/sh", "-c", "redis-cli ping"]),
    (["CMD", "/healthcheck", 1, True], ["/healthcheck", "1", "true"]),
    (["CMD", "echo", "$$HOME", "$$$$"], ["echo", "$HOME", "$$"]),
]  # fmt: skip


@pytest.mark.parametrize(("test", "command"), EXEC_CHECKS)
def test_any_other_check_runs_in_the_container_as_compose_ran_it(test: Any, command: list[str]) -> None:
    conversion = convert_api({"healthcheck": {"test": test}})
    backend_spec = conversion.manifest["spec"]["backend"]
    assert backend_spec["readiness"] == {"type": "Exec", "command": command}
    assert backend_spec["liveness"] == {"type": "TCP"}
    [warning] = [warning for warning in conversion.warnings if warning.field.endswith("healthcheck.test")]
    assert not warning.not_mapped
    assert f"the image must have {command[0]!r}" in warning.text
    assert parse_spec(conversion.manifest["spec"]).backend.container.readiness.command == tuple(command)


def test_a_url_check_of_another_port_stays_a_command_and_says_why() -> None:
    test = ["CMD", "curl", "-f", "http://localhost:8081/actuator/health"]
    conversion = convert_api({"healthcheck": {"test": test}})
    assert conversion.manifest["spec"]["backend"]["readiness"] == {"type": "Exec", "command": test[1:]}
    assert texts(conversion) == [
        "services.api.healthcheck.test: checks port 8081, not the backend's port 5000, so it runs in each "
        "copy as its readiness check (type Exec): the image must have 'curl'; unlike compose, a copy whose "
        "check fails gets no requests"
    ]


def test_interval_retries_and_start_period_become_the_readiness_timing() -> None:
    check = {
        "test": "curl -f http://localhost:5000/health",
        "interval": "1m30s",
        "retries": 5,
        "start_period": "2.5s",
        "timeout": "10s",
        "start_interval": "1s",
    }
    conversion = convert_api({"healthcheck": check})
    assert conversion.manifest["spec"]["backend"]["readiness"] == {
        "type": "HTTP", "path": "/health",
        "periodSeconds": 90, "failureThreshold": 5, "initialDelaySeconds": 3,
    }  # fmt: skip
    assert texts(conversion) == [
        "not mapped: services.api.healthcheck.timeout: no readiness field for it: the kubelet gives each "
        "check 1 s",
        "not mapped: services.api.healthcheck.start_interval: no readiness field for it: checks run every "
        "periodSeconds from the start",
    ]


def test_timing_beyond_the_crds_bounds_is_brought_within_them_and_said() -> None:
    check = {"test": ["CMD", "true"], "interval": "10m", "retries": 0, "start_period": "1h", "timeout": "1s"}
    conversion = convert_api({"healthcheck": check})
    readiness = conversion.manifest["spec"]["backend"]["readiness"]
    assert (readiness["periodSeconds"], readiness["failureThreshold"], readiness["initialDelaySeconds"]) == (
        300, 1, 600,
    )  # fmt: skip
    assert [text for text in texts(conversion) if "the CRD allows" in text] == [
        "services.api.healthcheck.interval: readiness.periodSeconds is 300, the most the CRD allows",
        "services.api.healthcheck.retries: readiness.failureThreshold is 1, the least the CRD allows",
        "services.api.healthcheck.start_period: readiness.initialDelaySeconds is 600, the most the CRD "
        "allows",
    ]
    fast = convert_api({"healthcheck": {"test": ["CMD", "true"], "interval": "500ms", "retries": 10**30}})
    assert fast.manifest["spec"]["backend"]["readiness"]["periodSeconds"] == 1
    assert fast.manifest["spec"]["backend"]["readiness"]["failureThreshold"] == 30


@pytest.mark.parametrize(
    "check",
    [{"test": ["NONE"]}, {"disable": True}, {"disable": True, "test": ["CMD", "true"]}, {"test": "NONE"}],
)
def test_a_check_that_is_turned_off_leaves_the_tcp_readiness(check: dict[str, Any]) -> None:
    if check == {"test": "NONE"}:  # a string is a shell line: a command named NONE
        assert backend({"healthcheck": check})["readiness"]["type"] == "Exec"
        return
    conversion = convert_api({"healthcheck": check})
    backend_spec = conversion.manifest["spec"]["backend"]
    assert backend_spec["readiness"] == {"type": "TCP"} and "liveness" not in backend_spec
    assert texts(conversion) == [
        "services.api.healthcheck: turned off: readiness is a TCP connect on port 5000"
    ]


def test_a_healthcheck_without_a_test_keeps_tcp_and_says_the_images_check_is_not_read() -> None:
    conversion = convert_api({"healthcheck": {"interval": "5s", "x-note": 1}})
    assert conversion.manifest["spec"]["backend"]["readiness"] == {"type": "TCP"}
    assert warned_fields(conversion) == ["services.api.healthcheck.x-note", "services.api.healthcheck"]
    assert "the image's own HEALTHCHECK, which is not read here" in texts(conversion)[1]


@pytest.mark.parametrize(
    ("check", "message"),
    [
        ("curl", r"services\.api\.healthcheck: must be a mapping"),
        ({"test": []}, r"services\.api\.healthcheck\.test: must be a string or a list"),
        ({"test": {"CMD": "x"}}, r"services\.api\.healthcheck\.test: must be a string or a list"),
        ({"test": ["RUN", "x"]}, r"services\.api\.healthcheck\.test\[0\]: must be NONE, CMD or CMD-SHELL"),
        ({"test": ["CMD"]}, r"services\.api\.healthcheck\.test: names no command"),
        ({"test": ["CMD-SHELL", " "]}, r"services\.api\.healthcheck\.test: names no command"),
        ({"test": ["CMD", ["x"]]}, r"services\.api\.healthcheck\.test\[1\]: must be a string"),
        ({"test": ["CMD", "x"] + ["y"] * 64}, r"services\.api\.healthcheck\.test: longer than a readiness"),
        ({"test": ["CMD", "x" * 4097]}, r"services\.api\.healthcheck\.test: longer than a readiness"),
        ({"test": ["CMD", "x"], "interval": "often"}, r"services\.api\.healthcheck\.interval: must be a dur"),
        ({"test": ["CMD", "x"], "interval": "-1s"}, r"services\.api\.healthcheck\.interval: must be a dur"),
        ({"test": ["CMD", "x"], "interval": float("inf")}, r"services\.api\.healthcheck\.interval: must be"),
        ({"test": ["CMD", "x"], "start_period": float("nan")}, r"services\.api\.healthcheck\.start_period"),
        ({"test": ["CMD", "x"], "timeout": True}, r"services\.api\.healthcheck\.timeout: must be a duration"),
        ({"test": ["CMD", "x"], "retries": "3"}, r"services\.api\.healthcheck\.retries: must be a whole"),
        ({"test": ["CMD", "x"], "retries": -1}, r"services\.api\.healthcheck\.retries: must be a whole"),
        ({"test": ["CMD", "x"], "disable": "yes"}, r"services\.api\.healthcheck\.disable: must be true or"),
    ],
)
def test_a_healthcheck_compose_would_refuse_is_an_error_naming_the_field(check: Any, message: str) -> None:
    with pytest.raises(ComposeError, match=f"^{message}"):
        convert_api({"healthcheck": check})


# --- replicas and the command-line overrides ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "replicas"),
    [
        ({}, 1),
        ({"scale": 3}, 3),
        ({"deploy": {"replicas": 4}, "scale": 3}, 4),
        ({"deploy": {"replicas": 0}}, 0),
    ],
)
def test_replicas_come_from_deploy_then_scale_then_one(fields: dict[str, Any], replicas: int) -> None:
    assert convert_api(fields).manifest["spec"]["replicas"] == replicas


@pytest.mark.parametrize("replicas", [51, -1, "2", True])
def test_replicas_out_of_the_crd_range_are_an_error(replicas: Any) -> None:
    with pytest.raises(ComposeError, match=r"^services\.api\.deploy\.replicas: must be a whole number"):
        convert_api({"deploy": {"replicas": replicas}})


def test_replicas_image_and_node_port_options_win() -> None:
    conversion = fixture(Options(replicas=5, image="registry.example/back-end:2", node_port=30080))
    spec = conversion.manifest["spec"]
    assert spec["replicas"] == 5
    assert spec["backend"]["image"] == "registry.example/back-end:2"
    assert spec["proxy"] == {
        "image": "scaledapi/nginx:dev",
        "port": 8080,
        "serviceType": "NodePort",
        "nodePort": 30080,
    }


def test_image_option_converts_a_service_that_only_builds() -> None:
    conversion = convert_api({"image": None, "build": "."}, options=Options(image="me/api:2"))
    assert conversion.manifest["spec"]["backend"]["image"] == "me/api:2"
    assert warned_fields(conversion) == ["services.api.build"]


def test_service_type_name_namespace_and_proxy_image_options() -> None:
    options = Options(
        name="shop",
        namespace="team-a",
        proxy_image="reg/nginx:1",
        service_type="LoadBalancer",
        node_port=30100,
    )
    manifest = fixture(options).manifest
    assert manifest["metadata"] == {"name": "shop", "namespace": "team-a"}
    assert manifest["spec"]["proxy"] == {
        "image": "reg/nginx:1", "port": 8080, "serviceType": "LoadBalancer", "nodePort": 30100,
    }  # fmt: skip


def test_a_node_port_on_a_cluster_ip_service_is_an_error() -> None:
    with pytest.raises(ComposeError, match=r"^--node-port: needs --service-type NodePort or LoadBalancer"):
        fixture(Options(service_type="ClusterIP", node_port=30080))


# --- the proxy ----------------------------------------------------------------------------------------------


def test_without_an_nginx_service_the_proxy_port_is_the_default() -> None:
    conversion = convert_api({}, others={})
    assert conversion.manifest["spec"]["proxy"] == {"image": "scaledapi/nginx:dev"}
    [warning] = conversion.warnings
    assert (warning.field, warning.not_mapped) == ("services", False)
    assert "spec.proxy.port is left at its default 8080" in warning.text


def test_the_proxy_port_is_the_published_side_that_users_call() -> None:
    conversion = convert_api(
        {}, others={"web": {"image": "docker.io/library/nginx:1.27", "ports": ["9090:80"]}}
    )
    assert conversion.manifest["spec"]["proxy"]["port"] == 9090
    assert conversion.warnings == []


def test_a_service_that_depends_on_the_api_in_map_form_is_its_proxy() -> None:
    others = {
        "front": {
            "image": "caddy",
            "depends_on": {"api": {"condition": "service_started"}},
            "ports": ["80:80"],
        }
    }
    assert convert_api({}, others=others).manifest["spec"]["proxy"]["port"] == 80


def test_of_several_proxies_the_first_by_name_is_used_and_the_others_named() -> None:
    others = {
        "zeta": {"image": "nginx", "ports": ["9000:80"]},
        "alpha": {"image": "nginx", "ports": ["7000:80"]},
        "db": {"image": "postgres"},
    }
    conversion = convert_api({}, others=others)
    assert conversion.manifest["spec"]["proxy"]["port"] == 7000
    assert texts(conversion) == [
        "services.alpha: taken as the proxy of api (first by name); also in front of it: zeta",
        "not mapped: services.zeta: only api and its proxy become the ScaledApi",
        "not mapped: services.db: only api and its proxy become the ScaledApi",
    ]


def test_a_proxy_whose_name_yaml_reads_as_a_number_is_found() -> None:
    # `1:` is the integer 1 as a YAML key (compose takes it as the service name "1").
    compose = load_yaml(
        "services:\n  api: {image: me/api:1, expose: ['5000']}\n  1: {image: nginx, ports: ['9090:80']}\n"
    )
    conversion = convert(compose, "api", Options(), COMPOSE_DIR)
    assert conversion.manifest["spec"]["proxy"]["port"] == 9090


def test_a_proxy_that_publishes_no_host_port_leaves_the_default() -> None:
    conversion = convert_api({}, others={"web": {"image": "nginx", "expose": ["80"]}})
    assert "port" not in conversion.manifest["spec"]["proxy"]
    assert warned_fields(conversion) == ["services.web.ports"]


NGINX_EXTRAS = """
# a comment { that is not a block
upstream app { server api:5000 weight=2; least_conn; }
server {
    listen 80;
    server_name "example.com";
    location / { proxy_pass http://app/; proxy_set_header Host $host; }
    location /static { root /srv; }
    rewrite ^/old /new;
    auth_basic "members only";
}
server { listen 8081; }
"""


def test_an_nginx_conf_doing_more_than_round_robin_is_named_in_one_warning(tmp_path: Path) -> None:
    (tmp_path / "default.conf").write_text(NGINX_EXTRAS)
    volume = {"type": "bind", "source": "./default.conf", "target": "/etc/nginx/conf.d/default.conf"}
    others = {"web": {"image": "nginx", "ports": ["8080:80"], "volumes": ["logs:/var/log/nginx", volume]}}
    conversion = convert_api({}, others=others, compose_dir=tmp_path)
    assert texts(conversion) == [
        "not mapped: services.web.volumes[1]: ./default.conf: ScaledApi generates the proxy's config; not "
        "carried over: upstream app: server api:5000 weight=2, upstream app: least_conn, another server "
        "block, location /: proxy_set_header Host $host, location /static, rewrite and more"
    ]


def test_the_classic_nginx_conf_carries_over_and_an_unreadable_one_is_named(tmp_path: Path) -> None:
    classic = parse_nginx((COMPOSE_DIR / "nginx.conf").read_text())
    assert foreign_directives(classic, "back-end", 5000) == []
    assert foreign_directives(classic, "back-end", 5001) == ["upstream back-end: server back-end:5000"]
    (tmp_path / "nginx.conf").write_text("http { server { listen 80; }")
    others = {
        "web": {"image": "nginx", "ports": ["8080:80"], "volumes": ["./nginx.conf:/etc/nginx/nginx.conf"]}
    }
    conversion = convert_api({}, others=others, compose_dir=tmp_path)
    assert "the whole file, which could not be read (unexpected end of file)" in texts(conversion)[0]


def test_a_direct_proxy_pass_to_the_api_is_round_robin_too() -> None:
    conf = parse_nginx("server { listen 80; location / { proxy_pass http://api:5000; } }")
    assert foreign_directives(conf, "api", 5000) == []


# --- what is not mapped, interpolation, errors --------------------------------------------------------------


def test_every_other_field_is_not_mapped_with_what_to_do_instead() -> None:
    fields = {
        "volumes": ["data:/data"], "restart": "always", "env_file": ".env", "container_name": "api",
        "depends_on": ["db"], "networks": ["back"], "labels": {"a": "b"}, "x-custom": 1, "no_such_key": True,
        "read_only": True, "deploy": {"restart_policy": {"condition": "any"}},
    }  # fmt: skip
    conversion = convert_api(fields)
    hints = {warning.field.removeprefix("services.api."): warning.text for warning in conversion.warnings}
    assert hints == {
        "volumes": "not supported: the backend copies are identical and stateless",
        "restart": "Kubernetes restarts containers itself",
        "env_file": "put it in a ConfigMap and use spec.backend.envFrom",
        "container_name": "conflicts with scaling: each copy is a pod with its own name",
        "depends_on": "Kubernetes starts pods in no order; a copy gets traffic once its readiness check "
        "passes",
        "networks": "every pod is on the cluster network; reach other services by their Kubernetes Service "
        "names",
        "labels": "no ScaledApi field for container labels",
        "x-custom": "no ScaledApi field for it",
        "no_such_key": "no ScaledApi field for it",
        "deploy.restart_policy": "Kubernetes restarts containers itself",
    }
    assert all(warning.not_mapped for warning in conversion.warnings)


def test_text_compose_would_interpolate_is_left_as_written_and_warned() -> None:
    fields = {
        "image": "me/api:${TAG:-1}",
        "environment": {"HOME_DIR": "$HOME", "PRICE": "$$5"},
        "volumes": ["${X}:/x"],
    }
    conversion = convert_api(fields)
    backend_spec = conversion.manifest["spec"]["backend"]
    assert backend_spec["image"] == "me/api:${TAG:-1}"
    assert backend_spec["env"] == [{"name": "HOME_DIR", "value": "$HOME"}, {"name": "PRICE", "value": "$$5"}]
    interpolated = [warning for warning in conversion.warnings if not warning.not_mapped]
    # $$ is compose's escape (and Kubernetes' too); volumes are not mapped at all, so not looked into.
    assert [warning.field for warning in interpolated] == [
        "services.api.image",
        "services.api.environment.HOME_DIR",
    ]
    assert interpolated[0].text.endswith("(write the value in the file, or give the image with --image)")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"image": None, "build": "./back-end"}, BUILD_ONLY.replace("back-end", "api")),
        ({"image": None}, "services.api.image: required: an image name (or give one with --image)"),
        ({"environment": "A=x"}, "services.api.environment: must be a list"),
    ],
)  # fmt: skip
def test_errors_name_the_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ComposeError) as raised:
        convert_api(fields)
    assert str(raised.value) == message


def test_an_unknown_service_is_an_error_listing_the_services() -> None:
    with pytest.raises(
        ComposeError, match=r"^services\.api2: no such service \(the file has: nginx, back-end\)$"
    ):
        convert(load_compose(COMPOSE_FILE), "api2", Options(), COMPOSE_DIR)


@pytest.mark.parametrize("compose", [None, {"version": "3"}, {"services": []}])
def test_a_file_without_services_is_an_error(compose: Any) -> None:
    with pytest.raises(ComposeError, match=r"^services: required"):
        convert(compose, "api", Options(), COMPOSE_DIR)


@pytest.mark.parametrize("name", ["Api", "api_1", "1api", "api-", "a" * 51])
def test_a_bad_name_option_is_an_error_naming_it_and_the_rule(name: str) -> None:
    with pytest.raises(ComposeError, match=r"^--name: .* must match \^\[a-z\].* at most 50 characters$"):
        convert_api({}, options=Options(name=name))


def test_a_service_name_that_is_no_scaledapi_name_asks_for_the_name_option() -> None:
    compose = {"services": {"back_end": {"image": "x", "expose": ["80"]}}}
    with pytest.raises(
        ComposeError, match=r"^services\.back_end: not a ScaledApi name .*: give one with --name$"
    ):
        convert(compose, "back_end", Options(), COMPOSE_DIR)
    assert convert(compose, "back_end", Options(name="back-end"), COMPOSE_DIR).manifest["metadata"] == {
        "name": "back-end"
    }


def test_a_bad_namespace_is_an_error() -> None:
    with pytest.raises(ComposeError, match=r"^--namespace: 'Team_A' is not a namespace name"):
        convert_api({}, options=Options(namespace="Team_A"))


# --- the command line ---------------------------------------------------------------------------------------


def test_main_prints_the_manifest_and_the_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(COMPOSE_FILE), "back-end", "--node-port", "30080"]) == 0
    out, err = capsys.readouterr()
    expected = copy.deepcopy(EXPECTED)
    expected["spec"]["proxy"].update(serviceType="NodePort", nodePort=30080)
    assert yaml.safe_load(out) == expected
    assert out.startswith("apiVersion: scaledapi.dev/v1alpha1\nkind: ScaledApi\n")  # the manifest's order
    assert err.splitlines() == [PREFIX + BUILD_WARNING]


def test_the_console_script_dispatches_from_compose(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["from-compose", str(COMPOSE_FILE), "back-end", "--name", "shop", "--replicas", "3"]) == 0
    manifest = yaml.safe_load(capsys.readouterr().out)
    assert (manifest["metadata"]["name"], manifest["spec"]["replicas"]) == ("shop", 3)


@pytest.mark.parametrize(
    "argv", [["to-helm"], [], ["from-compose", str(COMPOSE_FILE), "back-end", "--replicas", "51"]]
)
def test_unknown_subcommands_and_bad_option_values_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        cli(argv)
    assert raised.value.code == 2


@pytest.mark.parametrize(
    ("content", "service", "message"),
    [
        (None, "back-end", "cannot be read: No such file or directory"),
        # libyaml and PyYAML word it differently; both name the line.
        ("services: [\n", "back-end", r"not YAML: .*node content.* at line 2, column 1"),
        ("services:\n  back-end:\n    build: .\n", "back-end", re.escape(BUILD_ONLY)),
        ("services:\n  back-end:\n    image: x\n    expose: [80]\n", "web",
         re.escape("services.web: no such service (the file has: back-end)")),
    ],
)  # fmt: skip
def test_errors_exit_2_with_one_line_naming_the_file_and_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, service: str, message: str
) -> None:
    path = tmp_path / "compose.yaml"
    if content is not None:
        path.write_text(content)
    assert main([str(path), service]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    [line] = err.splitlines()
    assert re.fullmatch(f"{re.escape(f'{PREFIX}error: {path}: ')}{message}", line), line


def test_the_module_runs_as_a_script() -> None:
    command = [sys.executable, "-m", "scaledapi_operator.from_compose", str(COMPOSE_FILE), "back-end"]
    result = subprocess.run(
        [*command, "--name", "x"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["metadata"] == {"name": "x"}


# --- the fixture's API itself -------------------------------------------------------------------------------


def load_server(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    # Its directory is no package (back-end has a dash); no __pycache__ is left in the build context.
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    spec = importlib.util.spec_from_file_location("compose_back_end_server", SERVER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_users_api_answers_every_get_with_its_hostname_over_keep_alive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), load_server(monkeypatch).Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
    try:
        sockets = []
        for path in ("/api/hello", "/anything?x=1"):
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
            sockets.append(connection.sock)
            assert (response.status, response.version) == (200, 11)
            assert response.getheader("Content-Length") == str(len(body))
            assert response.getheader("Content-Type") == "application/json"
            assert json.loads(body) == {"hostname": socket.gethostname(), "path": path}
        assert sockets[0] is sockets[1]  # one connection for both: HTTP/1.1 keep-alive
    finally:
        connection.close()
        server.shutdown()
        server.server_close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_the_users_api_exits_cleanly_on_sigterm_and_writes_nothing(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "PORT": str(port)}
    process = subprocess.Popen([sys.executable, str(SERVER)], cwd=tmp_path, env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "server.py did not listen"
                time.sleep(0.05)  # polling for the port to open, not a fixed wait
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", "/")
        assert connection.getresponse().status == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        connection.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.stderr is not None and process.stderr.read() == b""
    assert list(tmp_path.iterdir()) == []
    assert not (SERVER.parent / "__pycache__").exists()
