#!/usr/bin/env bash
# Makes sure docker (an engine that answers), kind and kubectl are there. On air-gapped hosts the kind
# and kubectl binaries come from hack/airgap/build.sh; otherwise they are installed into the cache.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

"$REPO_ROOT/hack/airgap/docker.sh"

if airgap_enabled; then
  log "no container registry reachable (or AIRGAP=1): building the cluster images locally"
  "$REPO_ROOT/hack/airgap/build.sh"
  exit 0
fi

source "$REPO_ROOT/hack/airgap/versions.env"
mkdir -p "$SCALEDAPI_CACHE/bin"
if ! command -v kind >/dev/null 2>&1; then
  log "installing kind ${KIND_VERSION} with go install"
  GOBIN="$SCALEDAPI_CACHE/bin" go install "sigs.k8s.io/kind@${KIND_VERSION}"
fi
if ! command -v kubectl >/dev/null 2>&1; then
  log "installing kubectl ${KUBERNETES_VERSION}"
  curl -fsSLo "$SCALEDAPI_CACHE/bin/kubectl" "https://dl.k8s.io/release/${KUBERNETES_VERSION}/bin/linux/amd64/kubectl"
  chmod +x "$SCALEDAPI_CACHE/bin/kubectl"
fi
