#!/usr/bin/env bash
# make e2e: brings the cluster up (as make up, without the sample, on three nodes), runs tests/e2e
# against it, and removes the cluster afterwards unless KEEP_CLUSTER=1. Extra arguments go to pytest.
# Two phases: the independent scenarios side by side on E2E_WORKERS pytest-xdist workers (default 2,
# one module per worker at a time, each with its own namespaces and node ports: tests/e2e/ports.py),
# then those marked `serial` (node drain and stop, operator restart and reinstall, HPA, timings) alone.
# K=EXPR runs only the scenarios that pytest -k EXPR selects. reports/e2e-times.txt lists each
# scenario's time, slowest first.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
"$REPO_ROOT/hack/venv.sh"

# shellcheck disable=SC2317 # called by the EXIT trap
teardown() {
  if [[ ${KEEP_CLUSTER:-0} == 1 ]]; then
    log "KEEP_CLUSTER=1: cluster ${CLUSTER_NAME} left up (make down removes it)"
  else
    "$REPO_ROOT/hack/down.sh" >/dev/null 2>&1 || true
  fi
}
trap teardown EXIT

# Three nodes (kind-config-multinode.yaml): pods spread, nodes are drained and stopped, traffic crosses
# nodes. KIND_CONFIG=kind-config.yaml runs the suite on one node.
KIND_CONFIG=${KIND_CONFIG:-kind-config-multinode.yaml} SKIP_SAMPLE=1 "$REPO_ROOT/hack/up.sh"
# The scenarios use node port 30080 themselves; a sample left by `make up` would hold it.
# Foreground deletion returns only once the garbage collector has removed the children, the Service too.
kubectl_ctx delete scaledapi hello --namespace default --ignore-not-found --cascade=foreground --timeout=120s >/dev/null

# Scenario 12b installs the Helm chart: helm from hack/helm.sh (built into $SCALEDAPI_CACHE/bin if missing).
HELM=$("$REPO_ROOT/hack/helm.sh") || die "scenario 12b needs helm and hack/helm.sh could not build it"
export HELM
mkdir -p reports
rm -f reports/e2e-junit-*.xml
# Each worker needs three node ports of its own, mapped to host ports by the kind config.
mapped=$(grep -c 'containerPort: 300' "${KIND_CONFIG:-kind-config-multinode.yaml}")
workers=${E2E_WORKERS:-2}
((workers <= mapped / 3)) || workers=$((mapped / 3))
selection=()
[[ -z ${K:-} ]] || selection=(-k "$K")
failed=0
ran=0
phase() { # phase NAME PYTEST-ARGS...: one pytest run; "no test selected" (exit 5) is no failure
  local name=$1 rc=0
  shift
  log "e2e phase ${name}"
  E2E_REPORT=e2e-report-${name} .venv/bin/pytest tests/e2e -v -p no:cacheprovider \
    --junitxml="reports/e2e-junit-${name}.xml" "${selection[@]}" "$@" || rc=$?
  ((rc == 5)) || ran=$((ran + 1))
  ((rc == 0 || rc == 5)) || failed=$rc
}
parallel=()
((workers < 2)) || parallel=(-n "$workers" --dist loadfile)
phase parallel -m "not serial" "${parallel[@]}" "$@"
phase serial -m serial "$@"
.venv/bin/python hack/e2e_times.py reports/e2e-junit-*.xml >reports/e2e-times.txt || true
cat reports/e2e-times.txt
((ran > 0)) || die "no scenario selected${K:+ by K=${K}}"
exit "$failed"
