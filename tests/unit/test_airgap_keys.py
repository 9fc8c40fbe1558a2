"""hack/airgap/build.sh: a step's cache key covers its recipe, and only its own and its dependants' keys
move when the recipe changes.

Each test copies hack/airgap into a temporary folder, edits the copy and compares `build.sh --keys`
before and after. `--keys` needs neither Docker nor the network: it only hashes text and files.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AIRGAP = ROOT / "hack" / "airgap"

GO_STEPS = {
    "kind",
    "kubernetes",
    "etcd",
    "coredns",
    "crictl",
    "localpath",
    "kindnetd",
    "pause",
    "helm",
    "metricsserver",
}
DEBIAN_IMAGES = {"debian", "python", "nginx", "iptables", "kindbase", "components", "node"}


def build(airgap: Path, cache: Path, *args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    """build.sh ARGS with SCALEDAPI_CACHE=cache (and PATH, if given); it must succeed."""
    env = {**os.environ, "SCALEDAPI_CACHE": str(cache), "PATH": path or os.environ["PATH"]}
    env.pop("AIRGAP_VERSIONS", None)
    done = subprocess.run(
        ["bash", str(airgap / "build.sh"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def keys(airgap: Path, cache: Path) -> dict[str, str]:
    done = build(airgap, cache, "--keys")
    result = {}
    for line in done.stdout.splitlines():
        step, key, *_ = line.split()
        assert re.fullmatch(r"[0-9a-f]{12}", key), line
        result[step] = key
    return result


@pytest.fixture
def airgap(tmp_path: Path) -> Path:
    copy = tmp_path / "airgap"
    shutil.copytree(AIRGAP, copy)
    return copy


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


@pytest.fixture(scope="module")
def repository_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return keys(AIRGAP, tmp_path_factory.mktemp("cache"))


def test_keys_are_stable_distinct_and_independent_of_the_checkout(
    airgap: Path, tmp_path: Path, repository_keys: dict[str, str]
) -> None:
    first = keys(airgap, tmp_path / "cache")
    assert first == keys(airgap, tmp_path / "cache")
    assert len(set(first.values())) == len(first)
    # the copy hashes like the repository itself: no absolute path goes into a key
    assert first == repository_keys


def changed_steps(
    airgap: Path, tmp_path: Path, change: Callable[[Path], None], before: dict[str, str]
) -> set[str]:
    change(airgap)
    after = keys(airgap, tmp_path / "cache")
    assert before.keys() == after.keys()
    return {step for step in before if before[step] != after[step]}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(
            lambda a: edit(a / "lib" / "binaries.sh", "gcc -static -Os", "gcc -static -O2"),
            {"pause", "components", "node"},
            id="function-text",
        ),
        pytest.param(
            lambda a: edit(a / "pause.c", "*/", "*/\n/* changed */"),
            {"pause", "components", "node"},
            id="source-file",
        ),
        pytest.param(
            lambda a: edit(a / "kindnetd" / "main.go", "package main", "package main\n\n// changed"),
            {"kindnetd", "components", "node"},
            id="source-glob",
        ),
        pytest.param(
            lambda a: edit(
                a / "images" / "nginx" / "Dockerfile", "apt-install nginx", "apt-install nginx-light"
            ),
            {"nginx"},
            id="dockerfile-of-a-leaf-image",
        ),
        pytest.param(
            lambda a: edit(a / "images" / "iptables" / "iptables-wrapper", "set -eu", "set -eux"),
            {"iptables", "components", "node"},
            id="file-copied-into-an-image",
        ),
        pytest.param(
            lambda a: edit(a / "images" / "debian" / "apt-install", "apt-get clean", "apt-get autoclean"),
            DEBIAN_IMAGES,
            id="base-image-file",
        ),
        pytest.param(
            lambda a: edit(
                a / "images" / "components" / "kube-proxy" / "Dockerfile", "FROM ${BASE}", "FROM ${BASE}\n"
            ),
            {"components", "node"},
            id="component-dockerfile",
        ),
        pytest.param(
            lambda a: edit(a / "kind_consts.py", "import sys", "import sys  # changed"),
            {"components", "node"},
            id="script-a-helper-runs",
        ),
        pytest.param(
            lambda a: edit(
                a / "lib" / "images.sh", "--network host --force-rm", "--network host --force-rm --no-cache"
            ),
            DEBIAN_IMAGES,
            id="helper-function",
        ),
        pytest.param(
            lambda a: edit(
                a / "lib" / "binaries.sh",
                'GOTOOLCHAIN="go$v" CGO_ENABLED=0',
                'GOTOOLCHAIN="go$v" CGO_ENABLED=1',
            ),
            # every Go step, and what reads the kind module through moddir
            (GO_STEPS - {"pause"}) | {"kindbase", "components", "node"},
            id="helper-of-every-go-step",
        ),
        pytest.param(
            lambda a: edit(a / "versions.env", "COREDNS_VERSION=v1.12.0", "COREDNS_VERSION=v1.12.1"),
            {"coredns", "components", "node"},
            id="version",
        ),
        pytest.param(
            lambda a: edit(
                a / "lib" / "binaries.sh", "build_pause() {", "build_pause() {\n  # a comment only"
            ),
            set(),
            id="comment-only",
        ),
    ],
)
def test_a_change_moves_its_step_and_dependants_only(
    airgap: Path,
    tmp_path: Path,
    repository_keys: dict[str, str],
    change: Callable[[Path], None],
    expected: set[str],
) -> None:
    assert changed_steps(airgap, tmp_path, change, repository_keys) == expected


def test_an_undeclared_dependency_is_refused(airgap: Path, tmp_path: Path) -> None:
    edit(airgap / "build.sh", "step kindbase debian crictl", "step kindbase debian")
    done = subprocess.run(
        ["bash", str(airgap / "build.sh"), "--keys"],
        env={**os.environ, "SCALEDAPI_CACHE": str(tmp_path / "cache")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "step kindbase uses K_crictl of step crictl without declaring it as a dependency" in done.stderr


def test_a_go_only_step_needs_no_docker(tmp_path: Path) -> None:
    """`build.sh helm` (what make test runs on a fresh clone) never calls docker, and installs helm."""
    cache = tmp_path / "cache"
    key = keys(AIRGAP, cache)["helm"]
    # a built helm in the scratch cache: the step is then cached and build.sh only installs it
    out = cache / "out" / f"helm-{key}"
    out.mkdir(parents=True)
    (out / "helm").write_text("#!/bin/sh\necho fake helm\n")
    (out / "helm").chmod(0o755)
    (cache / "stamps").mkdir(parents=True, exist_ok=True)
    (cache / "stamps" / f"helm-{key}").touch()
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "docker").write_text(f"#!/bin/sh\ntouch {tmp_path}/docker-called\nexit 1\n")
    (stub / "docker").chmod(0o755)
    done = build(AIRGAP, cache, "helm", path=f"{stub}:{os.environ['PATH']}")
    assert f"helm: cached ({key})" in done.stdout
    assert not (tmp_path / "docker-called").exists()
    assert (cache / "bin" / "helm").read_text() == "#!/bin/sh\necho fake helm\n"
