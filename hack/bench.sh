#!/usr/bin/env bash
# make bench: the performance comparisons of issue 10 on the cluster of `make up` (python -m tests.bench;
# arguments go to it, e.g. --only throughput,scale --rounds 5; --help lists them). Not part of CI.
# Installs the load generator (Debian's hey) when missing and copies it into every kind node, so that
# load is generated inside the node and both paths (nginx, the backend's ClusterIP) start there.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
"$REPO_ROOT/hack/venv.sh"

command -v docker >/dev/null 2>&1 || die "docker is missing: the bench runs commands in the kind node containers"
command -v kubectl >/dev/null 2>&1 || die "kubectl is missing (make up installs one into ${SCALEDAPI_CACHE}/bin): run \`make up\` first"
kubectl_ctx get --raw /readyz >/dev/null 2>&1 ||
  die "the kind cluster (context ${KUBECONTEXT}) does not answer: run \`make up\` first"

if ! command -v hey >/dev/null 2>&1; then
  log "installing the load generator: apt-get install hey"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq hey >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq hey >/dev/null; } ||
    die "could not install hey (Debian bookworm's package): install it, then run make bench again"
fi
hey_binary=$(command -v hey)
mapfile -t nodes < <(kind get nodes --name "$CLUSTER_NAME")
((${#nodes[@]})) || die "kind lists no node of cluster ${CLUSTER_NAME}: run \`make up\` first"
for node in "${nodes[@]}"; do
  docker cp "$hey_binary" "${node}:/usr/local/bin/hey" >/dev/null
done
log "hey copied into ${nodes[*]}"

mkdir -p reports
.venv/bin/python -m tests.bench "$@"
