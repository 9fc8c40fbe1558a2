#!/usr/bin/env bash
# make down: removes the kind cluster (the image cache under $SCALEDAPI_CACHE stays).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
if cluster_exists; then
  kind delete cluster --name "$CLUSTER_NAME"
else
  log "no cluster ${CLUSTER_NAME}"
fi
