#!/bin/bash
# Ensure a working Docker engine. Idempotent and quick when `docker info` already answers.
# - installs Debian's docker.io (and jq) when no dockerd exists,
# - where the host's capability bounding set lacks capabilities that privileged containers ask for,
#   registers hack/airgap/runc-capfilter as dockerd's default runtime,
# - starts dockerd in the background (setsid + nohup, log under $SCALEDAPI_CACHE/logs) and waits for it.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${SCALEDAPI_CACHE:-/var/cache/scaledapi}
deadline_s=${DOCKER_WAIT_SECONDS:-90}
start=$(date +%s)
log() { echo "[docker.sh] $*"; }

if docker info >/dev/null 2>&1; then
  log "docker engine answers ($(docker version -f '{{.Server.Version}}' 2>/dev/null)), nothing to do"
  exit 0
fi

mkdir -p "$cache/logs"
if [[ $(id -u) != 0 ]]; then
  echo "docker.sh: no Docker engine answers and this is not root; cannot install or start one" >&2
  exit 1
fi

if ! command -v dockerd >/dev/null 2>&1 || ! command -v jq >/dev/null 2>&1; then
  log "installing Debian's docker.io (log: $cache/logs/docker-install.log)"
  {
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      docker.io jq iptables ca-certificates
  } >>"$cache/logs/docker-install.log" 2>&1 || {
    tail -20 "$cache/logs/docker-install.log" >&2
    echo "docker.sh: apt-get install docker.io failed" >&2
    exit 1
  }
fi

# Capabilities that runc grants a privileged container: all it knows. Missing any of them in our
# bounding set means privileged containers fail unless the spec is filtered.
bnd=$((16#$(awk '/^CapBnd:/ {print $2}' /proc/self/status)))
last_cap=$(cat /proc/sys/kernel/cap_last_cap 2>/dev/null || echo 40)
need_filter=0
for ((i = 0; i <= last_cap; i++)); do
  if (( ((bnd >> i) & 1) == 0 )); then need_filter=1; fi
done

mkdir -p /etc/docker
if (( need_filter )); then
  install -D -m 0755 "$here/runc-capfilter" /usr/local/sbin/runc-capfilter
  want='{"runtimes":{"runc-capfilter":{"path":"/usr/local/sbin/runc-capfilter"}},"default-runtime":"runc-capfilter"}'
  current='{}'
  [[ -s /etc/docker/daemon.json ]] && current=$(cat /etc/docker/daemon.json)
  merged=$(jq -S --argjson w "$want" '. * $w' <<<"$current")
  if [[ $merged != "$(jq -S . <<<"$current")" ]]; then
    log "host lacks capabilities (CapBnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)): runc-capfilter is dockerd's default runtime"
    printf '%s\n' "$merged" >/etc/docker/daemon.json
  fi
fi

start_dockerd() {
  # containerd is started by dockerd itself when none runs (Debian's docker.io).
  log "starting dockerd (log: $cache/logs/dockerd.log)"
  setsid nohup dockerd >>"$cache/logs/dockerd.log" 2>&1 </dev/null &
}

# A dockerd that is still exiting (killed with its session) counts as running at first; the loop below
# starts a new one as soon as it is gone.
if ! pgrep -x dockerd >/dev/null 2>&1; then start_dockerd; fi

until docker info >/dev/null 2>&1; do
  if ! pgrep -x dockerd >/dev/null 2>&1; then start_dockerd; fi
  if (( $(date +%s) - start > deadline_s )); then
    tail -30 "$cache/logs/dockerd.log" >&2 || true
    echo "docker.sh: dockerd did not answer within ${deadline_s}s" >&2
    exit 1
  fi
  sleep 0.5
done
log "docker engine ready ($(docker version -f '{{.Server.Version}}'), $(( $(date +%s) - start ))s)"
