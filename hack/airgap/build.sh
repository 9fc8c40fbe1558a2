#!/bin/bash
# Build, with no container registry, everything a kind cluster of ScaledApi needs: Go binaries from the
# Go module proxy, images from Debian packages (debootstrap and images/<name>/Dockerfile), and a kind node
# image assembled by hand. Cached under $SCALEDAPI_CACHE (default /var/cache/scaledapi) and in Docker's
# image store; each step's key hashes its recipe (lib/steps.sh), so a changed step and what depends on it
# build again. Writes $SCALEDAPI_CACHE/images.env and installs kind, kubectl and helm into $SCALEDAPI_CACHE/bin.
#
# Usage: build.sh [STEP ...]   (no STEP: everything; STEP names build single steps and install the tools
#                               among them, e.g. `build.sh helm`; Docker is started only for steps that use it)
#        build.sh --keys       (prints each step's key, whether it is built, and its dependencies)
#        build.sh --recipe STEP (prints the text a step's key hashes)
#        build.sh --prune      (removes cached outputs and images of keys other than the current ones)
# AIRGAP_VERSIONS=FILE uses another versions file (default: versions.env beside this script);
# AIRGAP_IMAGE_PREFIX names the images (default scaledapi-airgap).
# One line per step on stdout (with elapsed seconds); each step's full log is $SCALEDAPI_CACHE/logs/STEP.log.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VERSIONS_FILE=${AIRGAP_VERSIONS:-$here/versions.env}
# shellcheck source=versions.env
source "$VERSIONS_FILE"

CACHE=${SCALEDAPI_CACHE:-/var/cache/scaledapi}
LOGS=$CACHE/logs
OUT=$CACHE/out
WORK=$CACHE/work
mkdir -p "$LOGS" "$OUT" "$WORK" "$CACHE/bin" "$CACHE/stamps"

export GOMODCACHE=$CACHE/go/mod
export GOCACHE=$CACHE/go/build
export GOPATH=$CACHE/go/path
export GOPROXY=${GOPROXY:-https://proxy.golang.org,direct}
export DOCKER_BUILDKIT=0
GO_P=${BUILD_PARALLELISM:-$(nproc)}
IMG_PREFIX=${AIRGAP_IMAGE_PREFIX:-scaledapi-airgap}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

T_ALL=$(date +%s)
say() { echo "[airgap] $*"; }
die() {
  echo "[airgap] ERROR: $*" >&2
  exit 1
}

[[ -s $CA_BUNDLE ]] || die "no CA bundle at $CA_BUNDLE (set CA_BUNDLE)"

source "$here/lib/steps.sh"
source "$here/lib/binaries.sh"
source "$here/lib/images.sh"

# The steps, in dependency order: step NAME DEPENDENCY... (its function is build_NAME).
step kind
step kubernetes
step etcd
step coredns
step crictl
step localpath
step kindnetd
step pause
step helm
step metricsserver
step rootfs
step debian rootfs
step python debian
step nginx debian
step iptables debian
step kindbase debian crictl
step components debian iptables kubernetes etcd coredns localpath kindnetd pause metricsserver
step node kindbase components kubernetes
step_images debian IMG_DEBIAN
step_images python IMG_PYTHON
step_images nginx IMG_NGINX
step_images iptables IMG_IPTABLES
step_images kindbase IMG_KINDBASE
step_images node IMG_NODE

# derive_keys: every step's key and the image names made from them.
derive_keys() {
  compute_keys
  IMG_DEBIAN=$IMG_PREFIX/debian:$DEBIAN_SUITE-${KEY[debian]}
  IMG_PYTHON=$IMG_PREFIX/python:$DEBIAN_SUITE-${KEY[python]}
  IMG_NGINX=$IMG_PREFIX/nginx:$DEBIAN_SUITE-${KEY[nginx]}
  IMG_IPTABLES=$IMG_PREFIX/iptables:$DEBIAN_SUITE-${KEY[iptables]}
  IMG_KINDBASE=$IMG_PREFIX/kind-base:$KIND_VERSION-${KEY[kindbase]}
  IMG_NODE=$IMG_PREFIX/kind-node:$KUBERNETES_VERSION-${KEY[node]}
}
derive_keys

# ensure_docker: a Docker engine, then the keys again. Installing docker.io on a new machine may upgrade
# the host's CA bundle (ca-certificates), which the image steps bake in and their keys cover: keys taken
# before it named a build by the old bundle, and the next run rebuilt every image step (seen on a cold
# machine: debian's key changed between the first and the second run).
ensure_docker() {
  "$here/docker.sh"
  derive_keys
}

case ${1:-} in
  --keys)
    print_keys
    exit 0
    ;;
  --recipe)
    [[ -n ${KEY[${2:-}]:-} ]] || die "--recipe needs a step: ${STEPS[*]}"
    recipe "$2"
    exit 0
    ;;
  --prune)
    prune
    exit 0
    ;;
  -*) die "unknown option $1 (see the usage at the top of $0)" ;;
esac

# install_tools: kind, kubectl and helm into $CACHE/bin, each when its step's current output exists.
install_tools() {
  local s f
  for s in kind:kind kubernetes:kubectl helm:helm; do
    f=$OUT/${s%%:*}-${KEY[${s%%:*}]}/${s#*:}
    if [[ -x $f && -e $CACHE/stamps/${s%%:*}-${KEY[${s%%:*}]} ]]; then install -m 0755 "$f" "$CACHE/bin/${s#*:}"; fi
  done
}

for w in "$@"; do [[ -n ${KEY[$w]:-} ]] || die "no step $w (steps: ${STEPS[*]})"; done

if (($#)); then # single steps, in dependency order (e.g. `build.sh helm` for make test)
  # Only steps whose code runs docker need the engine: a Go-only step (helm) builds on a machine where
  # Docker is not running, which is where `make test` runs first in CI.
  for w in "$@"; do
    if step_uses_docker "$w"; then
      ensure_docker
      break
    fi
  done
  say "cache $CACHE; keys: kubernetes=${KEY[kubernetes]} node=${KEY[node]}"
  for s in "${STEPS[@]}"; do
    for w in "$@"; do
      if [[ $w == "$s" ]]; then run_step "$s"; fi
    done
  done
  install_tools
  exit 0
fi
ensure_docker
say "cache $CACHE; keys: kubernetes=${KEY[kubernetes]} node=${KEY[node]}"

# Two lanes: Go builds (CPU) in the background, Debian/Docker work (network, disk) in the foreground.
go_lane() {
  local s
  for s in kind kubernetes etcd coredns crictl localpath kindnetd pause helm metricsserver; do run_step "$s"; done
}
debian_lane() {
  local s
  for s in rootfs debian python nginx iptables; do run_step "$s"; done
}
go_lane &
go_pid=$!
debian_ok=0
debian_lane && debian_ok=1
wait "$go_pid" || die "a Go build failed (see $LOGS)"
((debian_ok)) || die "a Debian/image step failed (see $LOGS)"
run_step kindbase
run_step components
run_step node

# Go's build cache (~5 GB after a cold build) only speeds up recompiling; every output is kept under
# $OUT and keyed, so drop it unless asked to keep it. The module cache (~3.5 GB) stays: a changed version
# then downloads only the modules that changed.
if [[ ${AIRGAP_KEEP_GO_BUILD_CACHE:-0} != 1 && -d $GOCACHE ]]; then
  rm -rf "$GOCACHE"
fi

install_tools
cat >"$CACHE/images.env.tmp" <<ENV
# written by hack/airgap/build.sh $(date -Is)
KIND_NODE_IMAGE=$IMG_NODE
PYTHON_BASE=$IMG_PYTHON
NGINX_BASE=$IMG_NGINX
KIND_VERSION=$KIND_VERSION
KUBERNETES_VERSION=$KUBERNETES_VERSION
SCALEDAPI_BIN=$CACHE/bin
METRICS_SERVER_IMAGE=registry.k8s.io/metrics-server/metrics-server:$METRICS_SERVER_VERSION
METRICS_SERVER_TAR=$OUT/components-${KEY[components]}/images/metrics-server.tar
ENV
mv "$CACHE/images.env.tmp" "$CACHE/images.env"
say "done in $(($(date +%s) - T_ALL))s: $CACHE/images.env, kind, kubectl and helm in $CACHE/bin"
