"""Scenario 23: a Go API that listens on :80, from a compose file in which only nginx.conf names the port.

tests/compose/go-api is "nginx in front of a Go API" as public samples write it: a static binary in a
scratch image (no shell, no user: compose runs it as root), listening on :80; the compose file gives the
backend neither `expose` nor `ports`, and the proxy's mounted nginx.conf says `proxy_pass
http://backend:80`. The binary is built here with the machine's Go (no Go image is reachable), the image
from `FROM scratch`. `scaledapi from-compose` reads the port from nginx.conf; its output is applied
unedited, in a Pod Security "restricted" namespace. Port 80 gets the pod sysctl
`net.ipv4.ip_unprivileged_port_start=0`, so the image runs unchanged as uid 10001 with every capability
dropped, and round robin covers 3 copies exactly (k*m requests -> m each).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e import figures, kube, ports, traffic
from tests.e2e import scaledapi as sapi

COMPOSE_DIR = kube.REPO_ROOT / "tests" / "compose" / "go-api"
SERVICE = "backend"
IMAGE = "samples/go-api:1.0"  # the compose file's image: nothing to edit
USERS_API = traffic.Api(path="/api/hello", instance_key="hostname")
SCENARIO = "23 Go API on port 80"
COPIES = 3
ROUNDS = 10  # k: each copy answers exactly k of k*m requests


def _run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False, cwd=cwd, env=env)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result.stdout


@pytest.fixture(scope="module")
def go_image() -> str:
    """Build the Go binary and its scratch image and load it into the kind cluster, as a kind user would."""
    go = shutil.which("go")
    if go is None:
        raise AssertionError(
            "scenario 23 builds a Go API and needs the go command on PATH (Debian: golang-go)"
        )
    with tempfile.TemporaryDirectory(prefix="scaledapi-go-api-") as context:
        shutil.copy(COMPOSE_DIR / "backend" / "Dockerfile", context)
        env = {**os.environ, "CGO_ENABLED": "0"}
        _run(go, "build", "-trimpath", "-o", str(Path(context) / "api"), "main.go",
             cwd=COMPOSE_DIR / "backend", env=env)  # fmt: skip
        _run("docker", "build", "--quiet", "-t", IMAGE, context)
    user = _run("docker", "image", "inspect", "--format", "{{.Config.User}}", IMAGE).strip()
    assert user == "", f"the image is meant to have no user of its own (root in compose), it has {user!r}"
    _run(
        str(kube.CACHE_BIN / "kind"),
        "load",
        "docker-image",
        "--name",
        kube.CONTEXT.removeprefix("kind-"),
        IMAGE,
    )
    return IMAGE


def _convert(namespace: str, name: str) -> tuple[dict[str, Any], str]:
    result = subprocess.run(
        [
            sys.executable, "-m", "scaledapi_operator.from_compose",
            str(COMPOSE_DIR / "compose.yaml"), SERVICE,
            "--name", name, "--namespace", namespace, "--node-port", str(ports.MAIN),
            "--replicas", str(COPIES),
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"from-compose exited {result.returncode}:\n{result.stderr}"
    manifest = yaml.safe_load(result.stdout)
    assert isinstance(manifest, dict), result.stdout
    return manifest, result.stderr


def test_go_api_on_port_80_runs_unchanged(go_image: str, namespace: str, name: str) -> None:
    manifest, warnings = _convert(namespace, name)
    backend = manifest["spec"]["backend"]
    assert backend["image"] == go_image
    assert backend["port"] == 80, f"the port comes from nginx.conf's proxy_pass: {backend}"
    assert manifest["spec"]["replicas"] == COPIES
    kube.apply(manifest)

    ready = sapi.wait_serving(namespace, name, COPIES, api=USERS_API)
    sapi.wait_config_applied(namespace, name)
    pods = kube.list_json("pods", namespace, kube.backend_selector(name))
    pod_security = pods[0]["spec"]["securityContext"]
    assert pod_security["runAsNonRoot"] is True and pod_security["runAsUser"] == 10001, pod_security
    assert {"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"} in pod_security["sysctls"]
    container = pods[0]["spec"]["containers"][0]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}, container["securityContext"]
    restarts = [s["restartCount"] for p in pods for s in p["status"]["containerStatuses"]]
    assert restarts == [0] * COPIES, f"the API crashed before it served: {restarts}"

    order = traffic.instances(traffic.DEFAULT_PORT, ROUNDS * COPIES, USERS_API)
    counts = Counter(order)
    figures.record(SCENARIO, "converter warnings", warnings.strip().splitlines())
    figures.record(SCENARIO, f"round robin, {COPIES} copies, {ROUNDS * COPIES} requests", dict(counts))
    assert set(counts) == {p.name for p in ready}, counts
    assert sorted(counts.values()) == [ROUNDS] * COPIES, counts
    assert all(a != b for a, b in pairwise(order)), order
