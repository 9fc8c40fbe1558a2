#!/usr/bin/env bash
# Builds the backend, nginx and operator images. On air-gapped hosts the base images are the ones that
# hack/airgap/build.sh made from Debian packages; otherwise the Dockerfiles' defaults (official images).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

build_args=()
if airgap_enabled; then
  [[ -f $SCALEDAPI_CACHE/images.env ]] || die "$SCALEDAPI_CACHE/images.env is missing: run hack/airgap/build.sh"
  # shellcheck source=/dev/null # written by hack/airgap/build.sh
  source "$SCALEDAPI_CACHE/images.env"
  build_args=(--build-arg "PYTHON_BASE=${PYTHON_BASE}" --build-arg "NGINX_BASE=${NGINX_BASE}")
fi

mkdir -p "$REPO_ROOT/reports"
build() {
  local image=$1 dockerfile=$2 start=$SECONDS
  local build_log="$REPO_ROOT/reports/build-${image//[:\/]/-}.log"
  if ! docker build "${build_args[@]}" -f "$dockerfile" -t "$image" . >"$build_log" 2>&1; then
    tail -n 40 "$build_log" >&2
    die "building ${image} failed (full log: ${build_log})"
  fi
  log "built ${image} in $((SECONDS - start)) s"
}
build "$BACKEND_IMAGE" backend/Dockerfile
docker tag "$BACKEND_IMAGE" "$BACKEND_IMAGE_ALT"
build "$NGINX_IMAGE" nginx/Dockerfile
build "$OPERATOR_IMAGE" operator/Dockerfile
