#!/usr/bin/env bash
# helm, built from the Go module proxy by the airgap step `helm` (Go only: needs no Docker, so make test
# can use it on a fresh clone before any cluster exists). The step is keyed by its recipe: a cached helm
# costs about a second, a changed HELM_VERSION builds again (about 2 minutes on 2 cores).
# Usage: hack/helm.sh            prints the path of the helm binary
#        hack/helm.sh ARGS...    runs helm ARGS (e.g. hack/helm.sh lint charts/scaledapi)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

# build.sh writes one line per step on stdout; keep stdout for helm's own output.
"$REPO_ROOT/hack/airgap/build.sh" helm >&2 || die "could not build helm (log: $SCALEDAPI_CACHE/logs/helm.log)"
helm_bin=$SCALEDAPI_CACHE/bin/helm
if (($# == 0)); then
  echo "$helm_bin"
  exit 0
fi
exec "$helm_bin" "$@"
