#!/usr/bin/env bash
# make e2e: brings the cluster up (as make up, without the sample, on three nodes), runs tests/e2e
# against it, and removes the cluster afterwards unless KEEP_CLUSTER=1. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
"$REPO_ROOT/hack/venv.sh"

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
.venv/bin/pytest tests/e2e -v -p no:cacheprovider --junitxml=reports/e2e-junit.xml "$@"
