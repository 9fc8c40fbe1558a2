"""Scenario 16: a user's own API image, deployed from a compose file through `scaledapi from-compose`.

The image is not ours: tests/compose/back-end, a standard-library `http.server` script on port 5000 that
answers with its hostname, with no health endpoint, running as root in its image, built here from the
Debian python base of the air-gapped stack under the name the compose file gives it. The converter's
output is applied as it is (only the name, namespace and node port come from the command line), in a
Pod Security "restricted" namespace. Round robin covers every copy exactly, `kubectl scale` follows,
and a scale 2 -> 5 -> 2 under load loses no request.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e import figures, kube, ports, traffic
from tests.e2e import scaledapi as sapi

COMPOSE_DIR = kube.REPO_ROOT / "tests" / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
SERVICE = "back-end"
IMAGE = "course/back-end:1.0"  # the compose file's image: nothing to edit
IMAGES_ENV = Path(os.environ.get("SCALEDAPI_CACHE", "/var/cache/scaledapi")) / "images.env"
USERS_API = traffic.Api(path="/api/hello", instance_key="hostname")
SCENARIO = "16 bring your own API"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def _python_base() -> str:
    """The Debian python image the air-gapped build made (`make up` writes its name)."""
    if not IMAGES_ENV.is_file():
        raise AssertionError(f"{IMAGES_ENV} is missing: {kube.MAKE_UP_HINT}")
    for line in IMAGES_ENV.read_text().splitlines():
        if line.startswith("PYTHON_BASE="):
            return line.split("=", 1)[1]
    raise AssertionError(f"{IMAGES_ENV} names no PYTHON_BASE: {kube.MAKE_UP_HINT}")


@pytest.fixture(scope="module")
def users_image() -> str:
    """Build the user's image and load it into the kind cluster, as a user of kind would."""
    _run(
        "docker", "build", "--quiet", "--build-arg", f"PYTHON_BASE={_python_base()}",
        "-t", IMAGE, str(COMPOSE_DIR / "back-end"),
    )  # fmt: skip
    user = _run("docker", "image", "inspect", "--format", "{{.Config.User}}", IMAGE).stdout.strip()
    assert user in ("", "0", "root"), f"the image is meant to run as root in itself, its user is {user!r}"
    cluster = kube.CONTEXT.removeprefix("kind-")
    _run(str(kube.CACHE_BIN / "kind"), "load", "docker-image", "--name", cluster, IMAGE)
    return IMAGE


def _convert(namespace: str, name: str) -> tuple[dict[str, Any], str]:
    result = _run(
        sys.executable, "-m", "scaledapi_operator.from_compose", str(COMPOSE_FILE), SERVICE,
        "--name", name, "--namespace", namespace, "--node-port", str(ports.MAIN),
    )  # fmt: skip
    manifest = yaml.safe_load(result.stdout)
    assert isinstance(manifest, dict), result.stdout
    return manifest, result.stderr


def _served_by(count: int) -> list[str]:
    return traffic.instances(traffic.DEFAULT_PORT, count, USERS_API)


def test_a_users_api_from_compose(users_image: str, namespace: str, name: str) -> None:
    manifest, warnings = _convert(namespace, name)
    backend = manifest["spec"]["backend"]
    assert backend["image"] == users_image
    assert backend["port"] == 5000 and backend["readiness"] == {"type": "TCP"}
    assert manifest["spec"]["replicas"] == 2
    kube.apply(manifest)

    ready = sapi.wait_serving(namespace, name, 2, api=USERS_API)
    sapi.wait_config_applied(namespace, name)
    pods = kube.list_json("pods", namespace, kube.backend_selector(name))
    security = pods[0]["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001, security

    # Round robin over every copy exactly: 20 requests, 10 each, never the same copy twice in a row.
    order = _served_by(20)
    counts = Counter(order)
    assert set(counts) == {p.name for p in ready}, counts
    assert sorted(counts.values()) == [10, 10], counts
    assert all(a != b for a, b in pairwise(order)), order

    # kubectl scale, as compose's --scale.
    kube.kubectl("scale", f"scaledapi/{name}", "-n", namespace, "--replicas=3")
    three = sapi.wait_serving(namespace, name, 3, api=USERS_API)
    sapi.wait_config_applied(namespace, name)
    counts_three = Counter(_served_by(30))
    assert sorted(counts_three.values()) == [10, 10, 10], counts_three
    assert set(counts_three) == {p.name for p in three}

    # 2 -> 5 -> 2 under a steady GET load: nothing lost.
    kube.kubectl("scale", f"scaledapi/{name}", "-n", namespace, "--replicas=2")
    sapi.wait_serving(namespace, name, 2, no_terminating=True, api=USERS_API)
    with traffic.Load(rate=50, workers=4, max_seconds=300, max_requests=20_000, api=USERS_API) as load:
        kube.wait_for(lambda: load.sent >= 50, 30.0, 0.2, what="the load to start")
        kube.kubectl("scale", f"scaledapi/{name}", "-n", namespace, "--replicas=5")
        five = sapi.wait_serving(namespace, name, 5, api=USERS_API)
        kube.kubectl("scale", f"scaledapi/{name}", "-n", namespace, "--replicas=2")
        sapi.wait_serving(namespace, name, 2, no_terminating=True, api=USERS_API)
        since = load.sent
        kube.wait_for(lambda: load.sent >= since + 50, 30.0, 0.2, what="50 more requests after the scale")
    summary = load.summary()
    served = load.served_since(load.started)
    figures.record(SCENARIO, "converter warnings", warnings.strip().splitlines())
    figures.record(SCENARIO, "round robin, 2 copies, 20 requests", dict(counts))
    figures.record(SCENARIO, "round robin, 3 copies, 30 requests", dict(counts_three))
    figures.record(SCENARIO, "scale 2 -> 5 -> 2 under load", summary)
    figures.record(SCENARIO, "copies that answered during the load", len(served))
    failures = load.failures()
    assert not failures, f"{len(failures)} of {summary['sent']} requests failed:\n{load.describe_failures()}"
    assert {p.name for p in five} <= set(served), "a copy of the 5 never got traffic under load"
