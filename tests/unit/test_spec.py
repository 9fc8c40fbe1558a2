"""parse_spec: the CRD's defaults, and an error naming the field for every bad value."""

from __future__ import annotations

from typing import Any

import pytest

from scaledapi_operator.container_spec import EXEC, HTTP, TCP, Check, SecuritySpec
from scaledapi_operator.spec import BackendSpec, CanarySpec, ProxySpec, ScaledApiSpec, parse_spec
from scaledapi_operator.spec_errors import SpecError


def minimal() -> dict[str, Any]:
    return {"backend": {"image": "scaledapi/backend:dev"}, "proxy": {"image": "scaledapi/nginx:dev"}}


def test_defaults_match_the_crd() -> None:
    spec = parse_spec(minimal())
    assert spec == ScaledApiSpec(
        replicas=1,
        backend=BackendSpec(
            image="scaledapi/backend:dev",
            image_pull_policy="IfNotPresent",
            port=5252,
            greeting=None,
            termination_delay_seconds=5,
            graceful_shutdown_seconds=20,
        ),
        proxy=ProxySpec(
            image="scaledapi/nginx:dev",
            image_pull_policy="IfNotPresent",
            replicas=1,
            service_type="ClusterIP",
            port=8080,
            node_port=None,
            external_url=None,
            worker_processes=1,
            next_upstream_tries=3,
            upstream_timeout_seconds=30,
        ),
    )


def test_full_spec() -> None:
    spec = parse_spec(
        {
            "replicas": 3,
            "backend": {
                "image": "b:1",
                "imagePullPolicy": "Never",
                "port": 9000,
                "greeting": "Hi",
                "terminationDelaySeconds": 0,
                "gracefulShutdownSeconds": 300,
            },
            "proxy": {
                "image": "n:1",
                "imagePullPolicy": "Always",
                "replicas": 2,
                "serviceType": "NodePort",
                "port": 80,
                "nodePort": 30080,
                "externalURL": "http://localhost:8080",
                "workerProcesses": 8,
                "nextUpstreamTries": 10,
                "upstreamTimeoutSeconds": 1,
            },
        }
    )
    assert spec.replicas == 3
    assert spec.backend == BackendSpec("b:1", "Never", 9000, "Hi", 0, 300)
    assert spec.proxy == ProxySpec(
        "n:1", "Always", 2, "NodePort", 80, 30080, "http://localhost:8080", 8, 10, 1
    )


def test_spec_is_frozen() -> None:
    spec = parse_spec(minimal())
    with pytest.raises(AttributeError):
        spec.replicas = 5  # type: ignore[misc]


def test_zero_replicas_is_allowed() -> None:
    assert parse_spec({**minimal(), "replicas": 0}).replicas == 0


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("replicas",), -1, "spec.replicas"),
        (("replicas",), 51, "spec.replicas"),
        (("replicas",), "2", "spec.replicas"),
        (("replicas",), True, "spec.replicas"),
        (("backend", "image"), "has space", "spec.backend.image"),
        (("backend", "image"), "", "spec.backend.image"),
        (("backend", "image"), "x" * 513, "spec.backend.image"),
        (("backend", "image"), 5, "spec.backend.image"),
        (("backend", "imagePullPolicy"), "Sometimes", "spec.backend.imagePullPolicy"),
        (("backend", "port"), 0, "spec.backend.port"),
        (("backend", "port"), 65536, "spec.backend.port"),
        (("backend", "greeting"), "x" * 257, "spec.backend.greeting"),
        (("backend", "terminationDelaySeconds"), 61, "spec.backend.terminationDelaySeconds"),
        (("backend", "terminationDelaySeconds"), -1, "spec.backend.terminationDelaySeconds"),
        (("backend", "gracefulShutdownSeconds"), 0, "spec.backend.gracefulShutdownSeconds"),
        (("backend", "gracefulShutdownSeconds"), 301, "spec.backend.gracefulShutdownSeconds"),
        (("backend", "command"), "python3 server.py", "spec.backend.command"),
        (("backend", "args"), ["ok", 5], "spec.backend.args[1]"),
        (("backend", "workingDir"), "app", "spec.backend.workingDir"),
        (("backend", "env"), [{"name": "1A", "value": "x"}], "spec.backend.env[0].name"),
        (("backend", "env"), [{"name": "A"}], "spec.backend.env[0]"),
        (("backend", "env"), [{"name": "A", "value": 5}], "spec.backend.env[0].value"),
        (("backend", "envFrom"), [{"prefix": "X_"}], "spec.backend.envFrom[0]"),
        (("backend", "readiness"), {"type": "GRPC"}, "spec.backend.readiness.type"),
        (("backend", "readiness"), {"path": "healthz"}, "spec.backend.readiness.path"),
        (("backend", "readiness"), {"periodSeconds": 0}, "spec.backend.readiness.periodSeconds"),
        (("backend", "readiness"), {"type": "Exec"}, "spec.backend.readiness.command"),
        (("backend", "readiness"), {"type": "Exec", "command": []}, "spec.backend.readiness.command"),
        (
            ("backend", "readiness"),
            {"type": "Exec", "command": ["ok", 5]},
            "spec.backend.readiness.command[1]",
        ),
        (("backend", "readiness"), {"type": "Exec", "command": ["x"] * 65}, "spec.backend.readiness.command"),
        (("backend", "readiness"), {"type": "TCP", "command": ["true"]}, "spec.backend.readiness.command"),
        (("backend", "readiness"), {"command": ["true"]}, "spec.backend.readiness.command"),
        (("backend", "liveness"), {"type": "Exec", "command": ["true"]}, "spec.backend.liveness.type"),
        (("backend", "liveness"), {"type": "Off"}, "spec.backend.liveness.type"),
        (("backend", "liveness"), {"failureThreshold": 31}, "spec.backend.liveness.failureThreshold"),
        (("backend", "resources"), {"limits": {"gpu": "1"}}, "spec.backend.resources.limits.gpu"),
        (("backend", "resources"), {"requests": {"cpu": "lots"}}, "spec.backend.resources.requests.cpu"),
        (("backend", "securityContext"), {"runAsUser": 0}, "spec.backend.securityContext.runAsUser"),
        (("backend", "securityContext"), {"runAsUser": -1}, "spec.backend.securityContext.runAsUser"),
        (
            ("backend", "securityContext"),
            {"readOnlyRootFilesystem": "no"},
            "spec.backend.securityContext.readOnlyRootFilesystem",
        ),
        (("proxy", "image"), "a b", "spec.proxy.image"),
        (("proxy", "imagePullPolicy"), "always", "spec.proxy.imagePullPolicy"),
        (("proxy", "replicas"), 0, "spec.proxy.replicas"),
        (("proxy", "replicas"), 11, "spec.proxy.replicas"),
        (("proxy", "serviceType"), "ExternalName", "spec.proxy.serviceType"),
        (("proxy", "port"), 70000, "spec.proxy.port"),
        (("proxy", "workerProcesses"), 9, "spec.proxy.workerProcesses"),
        (("proxy", "nextUpstreamTries"), 0, "spec.proxy.nextUpstreamTries"),
        (("proxy", "upstreamTimeoutSeconds"), 301, "spec.proxy.upstreamTimeoutSeconds"),
        (("proxy", "externalURL"), "ftp://x", "spec.proxy.externalURL"),
        (("proxy", "externalURL"), "http://a b", "spec.proxy.externalURL"),
        (("canary",), "v2", "spec.canary"),
        (("canary",), {"weight": 10}, "spec.canary.image"),
        (("canary",), {"image": "api:v2"}, "spec.canary.weight"),
        (("canary",), {"image": "a b", "weight": 10}, "spec.canary.image"),
        (("canary",), {"image": "api:v2", "weight": 101}, "spec.canary.weight"),
        (("canary",), {"image": "api:v2", "weight": -1}, "spec.canary.weight"),
        (("canary",), {"image": "api:v2", "weight": True}, "spec.canary.weight"),
        (("canary",), {"image": "api:v2", "weight": 5, "replicas": 51}, "spec.canary.replicas"),
    ],
)
def test_bad_values_name_the_field(path: tuple[str, ...], value: Any, field: str) -> None:
    body = minimal()
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(SpecError) as caught:
        parse_spec(body)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


@pytest.mark.parametrize("section", ["backend", "proxy"])
def test_missing_section(section: str) -> None:
    body = minimal()
    del body[section]
    with pytest.raises(SpecError, match=rf"^spec\.{section}: is required"):
        parse_spec(body)


@pytest.mark.parametrize("section", ["backend", "proxy"])
def test_section_must_be_an_object(section: str) -> None:
    with pytest.raises(SpecError, match=rf"^spec\.{section}: must be an object"):
        parse_spec({**minimal(), section: "nope"})


@pytest.mark.parametrize("section", ["backend", "proxy"])
def test_missing_image(section: str) -> None:
    body = minimal()
    del body[section]["image"]
    with pytest.raises(SpecError, match=rf"^spec\.{section}\.image: is required"):
        parse_spec(body)


@pytest.mark.parametrize("node_port", [29999, 32768])
def test_node_port_bounds(node_port: int) -> None:
    body = minimal()
    body["proxy"].update(serviceType="NodePort", nodePort=node_port)
    with pytest.raises(SpecError, match=r"^spec\.proxy\.nodePort: must be between 30000 and 32767"):
        parse_spec(body)


def test_node_port_needs_node_port_or_load_balancer() -> None:
    body = minimal()
    body["proxy"]["nodePort"] = 30080  # serviceType defaults to ClusterIP
    with pytest.raises(SpecError, match=r"^spec\.proxy\.nodePort: is only allowed with serviceType NodePort"):
        parse_spec(body)
    body["proxy"]["serviceType"] = "LoadBalancer"
    assert parse_spec(body).proxy.node_port == 30080


def test_a_users_api_image_fields() -> None:
    backend = {
        "image": "course/back-end:1.0",
        "port": 5000,
        "command": ["python3"],
        "args": ["server.py"],
        "workingDir": "/app",
        "env": [{"name": "MODE", "value": "prod"}],
        "envFrom": [{"secretRef": {"name": "api"}}],
        "readiness": {"type": "TCP", "initialDelaySeconds": 1},
        "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
        "securityContext": {"runAsUser": 0, "runAsGroup": 0, "runAsNonRoot": False},
    }
    shape = parse_spec({**minimal(), "backend": backend}).backend.container
    assert (shape.command, shape.args, shape.working_dir) == (("python3",), ("server.py",), "/app")
    assert shape.env == ({"name": "MODE", "value": "prod"},)
    assert shape.env_from == ({"secretRef": {"name": "api"}},)
    assert shape.readiness == Check(
        TCP, "/healthz", initial_delay_seconds=1, period_seconds=2, failure_threshold=2
    )
    # Liveness follows readiness's kind unless given: a TCP-only API is not killed by an HTTP check.
    assert shape.liveness == Check(TCP, "/healthz", period_seconds=10, failure_threshold=3)
    assert shape.resources == {"limits": {"cpu": "500m", "memory": "128Mi"}}
    assert shape.security == SecuritySpec(0, 0, run_as_non_root=False, read_only_root_filesystem=True)


def test_an_exec_readiness_check_runs_its_command_and_liveness_then_defaults_to_tcp() -> None:
    readiness = {"type": "Exec", "command": ["/bin/sh", "-c", "pg_isready"], "periodSeconds": 5}
    shape = parse_spec({**minimal(), "backend": {"image": "b", "readiness": readiness}}).backend.container
    assert shape.readiness == Check(
        EXEC, "/healthz", period_seconds=5, failure_threshold=2, command=("/bin/sh", "-c", "pg_isready")
    )
    # A command is no liveness check: the copy is restarted only when its port stops accepting.
    assert shape.liveness == Check(TCP, "/healthz", period_seconds=10, failure_threshold=3)
    given = {"image": "b", "readiness": readiness, "liveness": {"type": "HTTP", "path": "/alive"}}
    assert parse_spec({**minimal(), "backend": given}).backend.container.liveness.path == "/alive"


def test_container_defaults_are_todays_bundled_backend() -> None:
    shape = parse_spec(minimal()).backend.container
    assert shape.readiness == Check(HTTP, "/healthz", period_seconds=2, failure_threshold=2)
    assert shape.liveness == Check(HTTP, "/healthz", period_seconds=10, failure_threshold=3)
    assert shape.resources == {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
    assert shape.security == SecuritySpec(10001, 10001, run_as_non_root=True, read_only_root_filesystem=True)
    assert shape.command is None and shape.args is None and shape.env == ()


def test_a_canary_is_parsed_with_its_default_replicas() -> None:
    spec = parse_spec({**minimal(), "canary": {"image": "api:v2", "weight": 20}})
    assert spec.canary == CanarySpec(image="api:v2", weight=20, replicas=1)
    assert parse_spec(minimal()).canary is None
