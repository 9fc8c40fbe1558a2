# shellcheck shell=bash
# shellcheck disable=SC2034 # the settings below are for the scripts that source this file
# Shared settings and helpers for the scripts in hack/. Source it; it does nothing by itself.

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export REPO_ROOT
# The air-gap cache lives outside the repository so that fresh clones on one machine (as CI uses) share it.
export SCALEDAPI_CACHE=${SCALEDAPI_CACHE:-/var/cache/scaledapi}
export CLUSTER_NAME=${CLUSTER_NAME:-scaledapi}
export KUBECONTEXT="kind-${CLUSTER_NAME}"
export PATH="${SCALEDAPI_CACHE}/bin:${PATH}"
# Debian's engine (20.10) has no buildx; the classic builder uses local base images as they are.
export DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0}

OPERATOR_NAMESPACE=scaledapi-system
OPERATOR_DEPLOYMENT=scaledapi-operator
BACKEND_IMAGE=scaledapi/backend:dev
# A second tag of the same backend image: the e2e suite changes to it to force a rolling update.
BACKEND_IMAGE_ALT=scaledapi/backend:dev2
NGINX_IMAGE=scaledapi/nginx:dev
OPERATOR_IMAGE=scaledapi/operator:dev

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

kubectl_ctx() { kubectl --context "$KUBECONTEXT" "$@"; }

# AIRGAP=1 forces the locally built images, AIRGAP=0 the upstream ones; unset or "auto" probes the
# registries (hack/airgap/registry-reachable.sh) and exports the answer, so that the scripts this one
# calls inherit it instead of probing again.
airgap_enabled() {
  case "${AIRGAP:-auto}" in
    1 | true | yes) return 0 ;;
    0 | false | no) return 1 ;;
  esac
  if "$REPO_ROOT/hack/airgap/registry-reachable.sh"; then export AIRGAP=0; else export AIRGAP=1; fi
  airgap_enabled
}

cluster_exists() {
  command -v kind >/dev/null 2>&1 && kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"
}

# The cluster's API server is ready within 60 s (a node container restarted by Docker needs a moment).
api_answers() {
  local deadline=$(($(date +%s) + 60))
  docker start "${CLUSTER_NAME}-control-plane" >/dev/null 2>&1 || return 1
  until kubectl_ctx get --raw /readyz >/dev/null 2>&1; do
    if (($(date +%s) >= deadline)); then return 1; fi
    sleep 2 # poll interval
  done
}

# Poll a command until it succeeds or the deadline (seconds) passes.
wait_until() {
  local deadline=$(($(date +%s) + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    if (($(date +%s) >= deadline)); then die "timed out waiting for ${what}"; fi
    sleep 1 # poll interval
  done
}
