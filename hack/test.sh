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
log "helm: lint and template charts/scaledapi (cluster-wide and namespaced values)"
# hack/helm.sh builds helm into $SCALEDAPI_CACHE/bin when it is missing (Go only), else fails saying why.
helm_bin=$("$REPO_ROOT/hack/helm.sh") ||
  die "helm is missing and hack/helm.sh could not build it: the chart checks and tests/unit/test_chart.py need it"
export HELM=$helm_bin
"$HELM" lint --strict charts/scaledapi
"$HELM" template scaledapi charts/scaledapi --namespace scaledapi-system --include-crds >/dev/null
"$HELM" template scaledapi charts/scaledapi --namespace scaledapi-system --include-crds \
  --set 'watchNamespaces={team-a,team-b}' >/dev/null
log "pytest: unit and integration, on two pytest-xdist workers (PYTEST_WORKERS=0 runs them in one process)"
# The integration tests each start their own nginx and gunicorn on free loopback ports, so two workers
# do not meet.
.venv/bin/pytest tests/unit tests/integration -n "${PYTEST_WORKERS:-2}" "$@"
