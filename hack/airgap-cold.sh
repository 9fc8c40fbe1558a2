#!/usr/bin/env bash
# make airgap-cold: `make up` from nothing, as on a fresh machine, beside what the user already has.
# Everything hack/airgap builds goes into a scratch cache (Go modules and toolchains, debootstrap, every
# image under a new image prefix), then a second kind cluster, scaledapi-cold, is created from it with
# its own kubeconfig and host ports 18080-18082, the operator and the sample are deployed, and the sample
# must answer from each backend copy in turn. The cluster, the scratch cache and the scratch images are
# removed afterwards (KEEP_COLD=1 keeps them). The user's cache, images and cluster are not touched, except
# that the tags scaledapi/*:dev are rebuilt, as every make up does.
# Step timings go to reports/airgap-cold.txt.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
run_id=$(date +%Y%m%d-%H%M%S)
scratch=${COLD_DIR:-/var/tmp/scaledapi-cold-$run_id}
[[ ! -e $scratch ]] || { echo "error: $scratch exists; the cold build needs an empty folder" >&2; exit 1; }
mkdir -p "$scratch"

export SCALEDAPI_CACHE=$scratch/cache
export AIRGAP=1
export AIRGAP_IMAGE_PREFIX=scaledapi-cold-$run_id
export CLUSTER_NAME=scaledapi-cold
export KUBECONFIG=$scratch/kubeconfig
export KIND_CONFIG=$scratch/kind-config.yaml
export SAMPLE_PORT=18080
source "$repo/hack/lib.sh"
cd "$REPO_ROOT"

cleanup() {
  if [[ ${KEEP_COLD:-0} == 1 ]]; then
    log "KEEP_COLD=1: kept $scratch, cluster ${CLUSTER_NAME} (KUBECONFIG=$KUBECONFIG), images ${AIRGAP_IMAGE_PREFIX}/*"
    return
  fi
  kind delete cluster --name "$CLUSTER_NAME" >/dev/null 2>&1 || true
  docker images --format '{{.Repository}}:{{.Tag}}' | grep "^${AIRGAP_IMAGE_PREFIX}/" | xargs -r docker rmi >/dev/null 2>&1 || true
  rm -rf "$scratch"
}
trap cleanup EXIT

# The usual kind config with the host ports moved, so that both clusters can run at once.
sed -e 's/hostPort: 8080/hostPort: 18080/; s/hostPort: 8081/hostPort: 18081/; s/hostPort: 8082/hostPort: 18082/' \
  kind-config.yaml >"$KIND_CONFIG"
grep -q 'hostPort: 18080' "$KIND_CONFIG" || die "kind-config.yaml no longer maps host port 8080"

log "cold build into $scratch (images ${AIRGAP_IMAGE_PREFIX}/*, cluster ${CLUSTER_NAME})"
start=$SECONDS
"$REPO_ROOT/hack/up.sh" 2>&1 | tee "$scratch/up.log"
up_seconds=$((SECONDS - start))

# Round robin: with N ready copies, every run of N consecutive answers names each copy once.
replicas=$(kubectl_ctx get scaledapi hello -o jsonpath='{.status.readyReplicas}')
mapfile -t pods < <(kubectl_ctx get pods -l "$(kubectl_ctx get scaledapi hello -o jsonpath='{.status.selector}')" \
  -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}' | sort)
((replicas >= 2 && ${#pods[@]} == replicas)) || die "expected at least 2 ready copies, got ${replicas} (pods: ${pods[*]})"
answers=()
for ((i = 0; i < 4 * replicas; i++)); do
  answers+=("$(curl -fsS --max-time 5 "http://localhost:${SAMPLE_PORT}/api/hello" | python3 -c 'import json, sys; print(json.load(sys.stdin)["instance"])')")
done
for ((i = 0; i + replicas <= ${#answers[@]}; i++)); do
  window=$(printf '%s\n' "${answers[@]:i:replicas}" | sort | tr '\n' ' ')
  [[ $window == "$(printf '%s\n' "${pods[@]}" | tr '\n' ' ')" ]] ||
    die "not round robin: answers ${answers[*]} (pods ${pods[*]})"
done
log "round robin over ${replicas} copies: ${answers[*]}"

mkdir -p reports
{
  echo "# make airgap-cold $(date -Is): $(nproc) cores"
  echo "build steps (seconds, from $SCALEDAPI_CACHE/logs/timings.txt; the Go and Debian lanes run in parallel):"
  sed 's/^/  /' "$SCALEDAPI_CACHE/logs/timings.txt"
  grep -E '^\[airgap\] done in|^\[docker.sh\]|^==> (built|ready|cluster)' "$scratch/up.log" | awk '!seen[$0]++' | sed 's/^/  /' || true
  echo "make up from nothing to the sample answering in turn: ${up_seconds} s"
} | tee reports/airgap-cold.txt
