#!/bin/bash
# Exit 0 when the upstream container registries that kind and our Dockerfiles pull from answer
# (Docker Hub and registry.k8s.io), 1 otherwise. AIRGAP=1 forces "not reachable", AIRGAP=0 "reachable".
# Usage in scripts: if hack/airgap/registry-reachable.sh; then <upstream images>; else <air-gapped build>; fi
set -euo pipefail
case ${AIRGAP:-} in
  1|true|yes) exit 1 ;;
  0|false|no) exit 0 ;;
esac
for url in https://registry-1.docker.io/v2/ https://registry.k8s.io/v2/; do
  # any HTTP answer (401 from Docker Hub is normal) means reachable; timeouts and DNS errors do not
  code=$(curl -sS -o /dev/null -m "${REGISTRY_PROBE_TIMEOUT:-5}" -w '%{http_code}' "$url" 2>/dev/null || true)
  [[ $code =~ ^[1-5][0-9][0-9]$ ]] || exit 1
done
exit 0
