"""hack/airgap/lib/steps.sh: run_step runs a step's deferred cleanups on success and on failure, and a
failed step leaves no output and no stamp behind.

The steps here are small bash functions run by the real run_step (no Docker: they declare no images).
The cleanup names a `local` of the step function, as build_node does with its helper container's id: the
bug that once broke a cold `make up` was a trap that expanded such a local after the function returned.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STEPS_LIB = ROOT / "hack" / "airgap" / "lib" / "steps.sh"

HARNESS = r"""
set -euo pipefail
here=$(mktemp -d)
CACHE=$1 OUT=$1/out LOGS=$1/logs WORK=$1/work
mkdir -p "$OUT" "$LOGS" "$WORK" "$CACHE/stamps"
say() { echo "[test] $*"; }
die() { echo "[test] ERROR: $*" >&2; exit 1; }
source "$2"
build_good() {
  local helper=good-helper
  defer touch "$CACHE/cleaned-$helper"
  echo made >"$D/output"
  echo scratch >"$W/scratch"
}
build_bad() {
  local helper=bad-helper
  defer touch "$CACHE/cleaned-$helper"
  echo half >"$D/output"
  false
  echo never >"$CACHE/after-false"
}
step good
step bad
KEY[good]=aaaaaaaaaaaa
KEY[bad]=bbbbbbbbbbbb
run_step "$3"
"""


def run(cache: Path, step: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", HARNESS, "harness", str(cache), str(STEPS_LIB), step],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_a_step_that_succeeds_runs_its_cleanups_and_keeps_its_output(tmp_path: Path) -> None:
    done = run(tmp_path, "good")
    assert done.returncode == 0, done.stderr
    assert "good: built" in done.stdout
    assert (tmp_path / "cleaned-good-helper").exists()
    assert (tmp_path / "out" / "good-aaaaaaaaaaaa" / "output").read_text() == "made\n"
    assert (tmp_path / "stamps" / "good-aaaaaaaaaaaa").exists()
    assert not (tmp_path / "work" / "good").exists(), "the step's scratch folder is removed"

    again = run(tmp_path, "good")
    assert again.returncode == 0, again.stderr
    assert "good: cached (aaaaaaaaaaaa)" in again.stdout


def test_a_step_that_fails_runs_its_cleanups_and_leaves_nothing(tmp_path: Path) -> None:
    done = run(tmp_path, "bad")
    assert done.returncode != 0
    assert "bad failed after" in done.stderr
    assert (tmp_path / "cleaned-bad-helper").exists()
    assert not (tmp_path / "after-false").exists(), "errexit stops the step at its first failure"
    assert not (tmp_path / "out" / "bad-bbbbbbbbbbbb").exists()
    assert not (tmp_path / "stamps" / "bad-bbbbbbbbbbbb").exists()
    assert not (tmp_path / "work" / "bad").exists()
