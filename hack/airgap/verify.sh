#!/bin/bash
# Verify the air-gapped kind setup end to end, timing each phase:
#   docker engine -> kind create cluster (kind-config.yaml, local node image) -> nodes Ready ->
#   CoreDNS, kube-proxy, kindnet, local-path-provisioner running, no pod pulling ->
#   `kind load docker-image` of a locally built image, a restricted pod from it (IfNotPresent) ->
#   a local-path PersistentVolumeClaim bound and written (helper image) -> cluster deleted.
# Usage: verify.sh [--keep] [--replace]
#   --keep leaves the cluster running; --replace deletes an existing cluster of the same name first
#   (without it an existing cluster, maybe someone else's, is an error).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
CACHE=${SCALEDAPI_CACHE:-/var/cache/scaledapi}
keep=0 replace=0
for a in "$@"; do
  case $a in
    --keep) keep=1 ;;
    --replace) replace=1 ;;
    *) echo "usage: verify.sh [--keep] [--replace]" >&2; exit 2 ;;
  esac
done

[[ -s $CACHE/images.env ]] || { echo "verify.sh: no $CACHE/images.env; run hack/airgap/build.sh first" >&2; exit 1; }
# shellcheck disable=SC1091
source "$CACHE/images.env"
export PATH=$CACHE/bin:$PATH
cluster=$(awk '/^name:/ {print $2; exit}' "$repo/kind-config.yaml")
ns=airgap-verify
T0=$(date +%s)
lap() { echo "[verify] $(( $(date +%s) - T0 ))s: $*"; }
fail() { echo "[verify] FAILED: $*" >&2; kubectl get pods -A -o wide >&2 || true; exit 1; }

# wait_for DESCRIPTION TIMEOUT_S COMMAND...: poll COMMAND until it succeeds
wait_for() {
  local what=$1 timeout=$2; shift 2
  local deadline=$(( $(date +%s) + timeout ))
  until "$@" >/dev/null 2>&1; do
    (( $(date +%s) < deadline )) || fail "$what not within ${timeout}s"
    sleep 1
  done
}

"$here/docker.sh"
lap "docker engine ready"

if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  if (( replace )); then
    kind delete cluster --name "$cluster"
  else
    echo "verify.sh: a kind cluster named $cluster exists; delete it or pass --replace" >&2
    exit 1
  fi
fi
kind create cluster --config "$repo/kind-config.yaml" --image "$KIND_NODE_IMAGE" --wait 0s
lap "kind create cluster returned"
kubectl config use-context "kind-$cluster" >/dev/null

wait_for "node Ready" 180 kubectl wait nodes --all --for=condition=Ready --timeout=5s
lap "nodes Ready"

running() { # running NAMESPACE SELECTOR: all pods of SELECTOR Running and ready
  local out
  out=$(kubectl -n "$1" get pods -l "$2" -o jsonpath='{range .items[*]}{.status.phase}{" "}{.status.containerStatuses[*].ready}{"\n"}{end}')
  [[ -n $out ]] && ! grep -qv '^Running true' <<<"$out"
}
wait_for "CoreDNS running" 180 running kube-system k8s-app=kube-dns
wait_for "kube-proxy running" 120 running kube-system k8s-app=kube-proxy
wait_for "kindnet running" 120 running kube-system app=kindnet
wait_for "local-path-provisioner running" 120 running local-path-storage app=local-path-provisioner
lap "CoreDNS, kube-proxy, kindnet, local-path-provisioner running"

pulling=$(kubectl get pods -A -o jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.name}: {.status.containerStatuses[*].state.waiting.reason}{"\n"}{end}' | grep -E 'ImagePullBackOff|ErrImagePull' || true)
[[ -z $pulling ]] || fail "pods pulling images: $pulling"

# a locally built image from the python base, loaded with kind load docker-image
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cat >"$ctx/Dockerfile" <<EOF
FROM $PYTHON_BASE
RUN python3 -m venv /opt/venv && /opt/venv/bin/python -c 'import ssl; print(ssl.OPENSSL_VERSION)'
USER 10001:10001
CMD ["/opt/venv/bin/python", "-m", "http.server", "8000", "--bind", "0.0.0.0"]
EOF
DOCKER_BUILDKIT=0 docker build -q -t scaledapi/airgap-verify:dev "$ctx" >/dev/null
lap "test image built"
kind load docker-image scaledapi/airgap-verify:dev --name "$cluster"
lap "kind load docker-image done"

kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl label namespace "$ns" pod-security.kubernetes.io/enforce=restricted --overwrite >/dev/null
kubectl -n "$ns" apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Pod
metadata:
  name: restricted
  labels: {app: airgap-verify}
spec:
  securityContext:
    runAsNonRoot: true
    seccompProfile: {type: RuntimeDefault}
  containers:
    - name: web
      image: scaledapi/airgap-verify:dev
      imagePullPolicy: IfNotPresent
      ports: [{containerPort: 8000}]
      readinessProbe:
        httpGet: {path: /, port: 8000}
        periodSeconds: 2
      securityContext:
        allowPrivilegeEscalation: false
        capabilities: {drop: ["ALL"]}
        runAsNonRoot: true
        seccompProfile: {type: RuntimeDefault}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 10Mi}}
---
apiVersion: v1
kind: Pod
metadata:
  name: writer
spec:
  restartPolicy: Never
  securityContext:
    runAsNonRoot: true
    runAsUser: 10001
    seccompProfile: {type: RuntimeDefault}
  containers:
    - name: writer
      image: scaledapi/airgap-verify:dev
      imagePullPolicy: IfNotPresent
      command: ["/bin/sh", "-c", "echo ok > /data/ok && cat /data/ok && getent hosts kubernetes.default.svc.cluster.local"]
      volumeMounts: [{name: data, mountPath: /data}]
      securityContext:
        allowPrivilegeEscalation: false
        capabilities: {drop: ["ALL"]}
  volumes:
    - name: data
      persistentVolumeClaim: {claimName: data}
EOF
wait_for "restricted pod ready" 120 kubectl -n "$ns" wait pod/restricted --for=condition=Ready --timeout=5s
lap "restricted pod from the loaded image ready"
succeeded() { [[ $(kubectl -n "$ns" get pod writer -o jsonpath='{.status.phase}') == Succeeded ]]; }
wait_for "pod on a local-path volume (DNS lookup inside) succeeded" 120 succeeded
kubectl -n "$ns" logs writer
lap "local-path volume bound and written; cluster DNS answers"

# a Service through kube-proxy, from another pod
kubectl -n "$ns" expose pod restricted --port 80 --target-port 8000 --name web >/dev/null
kubectl -n "$ns" run client --image scaledapi/airgap-verify:dev --image-pull-policy IfNotPresent --restart Never \
  --overrides '{"spec":{"securityContext":{"runAsNonRoot":true,"seccompProfile":{"type":"RuntimeDefault"}},"containers":[{"name":"client","image":"scaledapi/airgap-verify:dev","imagePullPolicy":"IfNotPresent","command":["/opt/venv/bin/python","-c","import urllib.request; print(urllib.request.urlopen(\"http://web\").status)"],"securityContext":{"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]}}}]}}' >/dev/null
client_done() { [[ $(kubectl -n "$ns" get pod client -o jsonpath='{.status.phase}') == Succeeded ]]; }
wait_for "Service reachable through kube-proxy" 90 client_done
lap "Service answered through kube-proxy: HTTP $(kubectl -n "$ns" logs client)"

pulling=$(kubectl get pods -A -o jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.name}: {.status.containerStatuses[*].state.waiting.reason}{"\n"}{end}' | grep -E 'ImagePullBackOff|ErrImagePull' || true)
[[ -z $pulling ]] || fail "pods pulling images: $pulling"
kubectl get nodes -o wide
kubectl get pods -A -o wide

if (( keep )); then
  kubectl delete namespace "$ns" --wait=false >/dev/null
  lap "all checks passed; cluster $cluster kept"
else
  kind delete cluster --name "$cluster"
  lap "all checks passed; cluster $cluster deleted"
fi
