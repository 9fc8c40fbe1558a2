#!/usr/bin/env bash
# make test: lint (shellcheck, ruff), types, unit and integration tests. No cluster needed; nginx and
# gunicorn run for real.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
"$REPO_ROOT/hack/venv.sh"

command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] ||
  die "nginx is missing: the integration tests run the real binary (Debian: apt-get install nginx)"

log "shellcheck"
"$REPO_ROOT/hack/shellcheck.sh"
log "ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
log "mypy --strict"
.venv/bin/mypy
log "pytest: unit and integration"
.venv/bin/pytest tests/unit tests/integration "$@"
