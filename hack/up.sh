#!/usr/bin/env bash
# make up: kind cluster (created if missing), images built and loaded, CRD + RBAC + operator deployed,
# the sample applied and answering on localhost:8080. SKIP_SAMPLE=1 stops before the sample.
# KIND_CONFIG (default kind-config.yaml) and SAMPLE_PORT (default 8080, the host port that the config
# maps to node port 30080) let hack/airgap-cold.sh run a second cluster beside the usual one.
# SCALEDAPI_NAMESPACES=a,b installs the operator namespaced (hack/install_manifests.py): it may act only
# in those namespaces, which are created if missing; the sample goes into the first of them.
# INSTALL=helm installs CRD, RBAC and operator with `helm upgrade --install scaledapi charts/scaledapi`
# (release scaledapi in scaledapi-system; with SCALEDAPI_NAMESPACES, values watchNamespaces) instead of
# `kubectl apply -k manifests/`; it takes over objects an earlier kubectl install left (their fields too).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
start=$SECONDS

airgap_enabled || true # decides AIRGAP once; tools.sh and build-images.sh inherit it
"$REPO_ROOT/hack/tools.sh"

kind_config=${KIND_CONFIG:-kind-config.yaml}
# A cluster left from an earlier session may have lost its node container with the Docker daemon.
if cluster_exists && ! api_answers; then
  log "cluster ${CLUSTER_NAME} exists but its API server does not answer: recreating it"
  kind delete cluster --name "$CLUSTER_NAME"
fi
# make up (one node) and make e2e (three) share the cluster name: a cluster of the other shape goes.
wanted_nodes=$(grep -cE '^[[:space:]]*- role:' "$kind_config")
if cluster_exists && (($(kind get nodes --name "$CLUSTER_NAME" | wc -l) != wanted_nodes)); then
  log "cluster ${CLUSTER_NAME} does not have the ${wanted_nodes} node(s) of ${kind_config}: recreating it"
  kind delete cluster --name "$CLUSTER_NAME"
fi
# A cluster made from an older config may lack host ports that the config maps now (make e2e's workers).
if cluster_exists; then
  published=$(docker port "${CLUSTER_NAME}-control-plane" 2>/dev/null || true)
  while read -r host_port; do
    if ! grep -q ":${host_port}\$" <<<"$published"; then
      log "cluster ${CLUSTER_NAME} does not map host port ${host_port} of ${kind_config}: recreating it"
      kind delete cluster --name "$CLUSTER_NAME"
      break
    fi
  done < <(grep -oE 'hostPort: [0-9]+' "$kind_config" | cut -d' ' -f2)
fi
if cluster_exists; then
  log "cluster ${CLUSTER_NAME} exists"
else
  node_image=()
  if airgap_enabled; then
    # shellcheck source=/dev/null # written by hack/airgap/build.sh
    source "$SCALEDAPI_CACHE/images.env"
    node_image=(--image "$KIND_NODE_IMAGE")
  fi
  log "creating cluster ${CLUSTER_NAME} ${node_image[*]}"
  kind create cluster --name "$CLUSTER_NAME" --config "$kind_config" "${node_image[@]}" --wait 180s
fi

"$REPO_ROOT/hack/build-images.sh"
log "loading images into kind"
kind load docker-image --name "$CLUSTER_NAME" \
  "$BACKEND_IMAGE" "$BACKEND_IMAGE_ALT" "$NGINX_IMAGE" "$OPERATOR_IMAGE" >/dev/null

# So that the README's plain `kubectl scale scaledapi/hello ...` talks to this cluster.
kubectl config use-context "$KUBECONTEXT" >/dev/null

# metrics-server (a cluster add-on, not the product): what `kubectl top` and an HPA on CPU read. The
# air-gapped node image has its image preloaded; a cluster created from an older node image gets it
# loaded here instead, so that no one has to recreate a cluster for it.
if airgap_enabled; then
  # shellcheck source=/dev/null # written by hack/airgap/build.sh
  source "$SCALEDAPI_CACHE/images.env"
  for node in $(kind get nodes --name "$CLUSTER_NAME"); do
    if ! docker exec "$node" crictl inspecti "$METRICS_SERVER_IMAGE" >/dev/null 2>&1; then
      log "node ${node} lacks ${METRICS_SERVER_IMAGE}: loading it"
      kind load image-archive --name "$CLUSTER_NAME" "$METRICS_SERVER_TAR" >/dev/null
      break
    fi
  done
fi
log "deploying metrics-server (hack/addons/metrics-server.yaml)"
kubectl_ctx apply -f hack/addons/metrics-server.yaml >/dev/null

install=${INSTALL:-kustomize}
[[ $install == kustomize || $install == helm ]] || die "INSTALL=${install}: kustomize (the default) or helm"
# The image tag stays :dev, so a rebuilt image only reaches the operator through a template change.
operator_image_id=$(docker image inspect --format '{{.Id}}' "$OPERATOR_IMAGE" | cut -d: -f2 | cut -c1-16)
sample_namespace=default
watched=()
if [[ -n ${SCALEDAPI_NAMESPACES:-} ]]; then
  IFS=, read -ra watched <<<"$SCALEDAPI_NAMESPACES"
  sample_namespace=${watched[0]}
  for ns in "${watched[@]}"; do
    kubectl_ctx create namespace "$ns" --dry-run=client -o yaml | kubectl_ctx apply -f - >/dev/null
  done
fi
if [[ $install == helm ]]; then
  helm_bin=$("$REPO_ROOT/hack/helm.sh") || die "INSTALL=helm: no helm (hack/helm.sh could not build it)"
  helm_args=(--set-string "podAnnotations.scaledapi\.dev/image-id=${operator_image_id}")
  if ((${#watched[@]})); then
    helm_args+=(--set "watchNamespaces={$(IFS=,; echo "${watched[*]}")}")
  fi
  # The Namespace is not the release's (as manifests/operator.yaml has it: Pod Security "restricted").
  kubectl_ctx create namespace "$OPERATOR_NAMESPACE" --dry-run=client -o yaml | kubectl_ctx apply -f - >/dev/null
  kubectl_ctx label namespace "$OPERATOR_NAMESPACE" --overwrite pod-security.kubernetes.io/enforce=restricted \
    pod-security.kubernetes.io/enforce-version=latest >/dev/null
  # helm installs crds/ once and never upgrades them: the CRD is applied as the kustomization does.
  kubectl_ctx apply -f manifests/crd.yaml >/dev/null
  log "deploying RBAC and operator with helm (release scaledapi${watched:+, namespaced: ${watched[*]}})"
  "$helm_bin" upgrade --install scaledapi charts/scaledapi --kube-context "$KUBECONTEXT" \
    --namespace "$OPERATOR_NAMESPACE" --take-ownership --force-conflicts "${helm_args[@]}" >/dev/null
elif ((${#watched[@]})); then
  "$REPO_ROOT/hack/venv.sh"
  rendered=$(.venv/bin/python hack/install_manifests.py "${watched[@]/#/--namespace=}") ||
    die "SCALEDAPI_NAMESPACES=${SCALEDAPI_NAMESPACES}: see the message above"
  log "deploying CRD, RBAC and operator, namespaced: ${watched[*]}"
  kubectl_ctx apply -f - >/dev/null <<<"$rendered"
else
  log "deploying CRD, RBAC and operator (cluster-wide)"
  kubectl_ctx apply -k manifests/ >/dev/null
fi
kubectl_ctx wait --for condition=established --timeout=60s crd/scaledapis.scaledapi.dev >/dev/null
if [[ $install == kustomize ]]; then
  kubectl_ctx -n "$OPERATOR_NAMESPACE" patch deployment "$OPERATOR_DEPLOYMENT" --type merge -p \
    "{\"spec\":{\"template\":{\"metadata\":{\"annotations\":{\"scaledapi.dev/image-id\":\"${operator_image_id}\"}}}}}" >/dev/null
fi
kubectl_ctx -n "$OPERATOR_NAMESPACE" rollout status deployment "$OPERATOR_DEPLOYMENT" --timeout=180s
# applied before the images were built, so it has been starting meanwhile
kubectl_ctx -n kube-system rollout status deployment metrics-server --timeout=120s
metrics_api_serves() { kubectl_ctx get --raw /apis/metrics.k8s.io/v1beta1/nodes; }
until_deadline() { # until_deadline SECONDS CMD...: whether CMD succeeded before SECONDS passed
  local deadline=$(($(date +%s) + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    (($(date +%s) < deadline)) || return 1
    sleep 1 # poll interval
  done
}
# Seen here on fresh clusters (kube-apiserver v1.33.13): the APIService says Available and
# metrics-server answers the API server's own front-proxy requests, yet the aggregator keeps answering
# 404 for metrics.k8s.io/v1beta1 (kubectl top: "Metrics API not available"; an HPA never acts). A
# restart of the API server clears it; so wait for node metrics through the API server, and restart
# it once when they do not come.
if ! until_deadline 90 metrics_api_serves; then
  log "metrics.k8s.io answers 404 through the API server: restarting kube-apiserver once (see hack/up.sh)"
  for node in $(kind get nodes --name "$CLUSTER_NAME"); do
    [[ $node == *control-plane* ]] || continue
    docker exec "$node" sh -c 'crictl ps --name kube-apiserver -q | xargs -r crictl stop' >/dev/null
  done
  wait_until 120 "the API server after its restart" kubectl_ctx get --raw /readyz
  until_deadline 90 metrics_api_serves ||
    die "metrics.k8s.io does not answer through the API server: kubectl get apiservice v1beta1.metrics.k8s.io"
fi

if [[ ${SKIP_SAMPLE:-0} == 1 ]]; then
  log "cluster ready in $((SECONDS - start)) s (sample not applied)"
  exit 0
fi

log "applying manifests/scaledapi.yaml"
kubectl_ctx apply -n "$sample_namespace" -f manifests/scaledapi.yaml >/dev/null
kubectl_ctx wait -n "$sample_namespace" --for condition=Ready --timeout=180s scaledapi/hello >/dev/null
sample_url="http://localhost:${SAMPLE_PORT:-8080}/api/hello"
wait_until 60 "${sample_url} to answer" curl -fsS --max-time 2 "$sample_url"
kubectl_ctx get -n "$sample_namespace" scaledapi hello
log "ready in $((SECONDS - start)) s. Try it:"
echo "  curl ${sample_url}"
