#!/usr/bin/env bash
# Creates .venv with the package and its test extras, unless it is already up to date with pyproject.toml.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

stamp=.venv/.pyproject.sha256
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ -x .venv/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then
  exit 0
fi
log "creating .venv (python: $(command -v python3))"
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e '.[test]'
echo "$want" >"$stamp"
