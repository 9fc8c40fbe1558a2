# shellcheck shell=bash
# shellcheck disable=SC2154 # here, D, GO_P and the versions come from build.sh
# Steps that build binaries: Go programs from the Go module proxy, and the pause program with gcc.
# Each writes into $D (see lib/steps.sh). Go's caches are shared by all steps: GOMODCACHE, GOCACHE and
# GOPATH under $CACHE/go (locations only, not part of any recipe).

gotc() { # go with a given toolchain and the settings every build here uses: gotc VERSION args...
  local v=$1
  shift
  GOTOOLCHAIN="go$v" CGO_ENABLED=0 GOFLAGS="-buildvcs=false -modcacherw" go "$@"
}

moddir() { # moddir MODULE@VERSION -> directory in the module cache (downloads it)
  gotc "$GO_VERSION" mod download -json "$1" | jq -er .Dir
}


build_kind() {
  GOBIN=$D gotc "$GO_VERSION" install -p "$GO_P" -trimpath -ldflags "-s -w" "sigs.k8s.io/kind@$KIND_VERSION"
  "$D/kind" version
}

build_kubernetes() {
  local v=$KUBERNETES_VERSION minor src
  minor=${v#v1.}; minor=${minor%%.*}
  src=$(moddir "k8s.io/kubernetes@$v")
  mkdir -p "$D/mod"
  {
    echo "module scaledapi.local/airgap/kubernetes"
    echo
    echo "go $(awk '/^go / {print $2; exit}' "$src/go.mod")"
    echo
    echo "require k8s.io/kubernetes $v"
    echo
    echo "replace ("
    # every staging module (replaced by ./staging/src/... in Kubernetes' own go.mod) -> v0.MINOR.PATCH
    awk -v to="v0.${v#v1.}" '$2 == "=>" && $3 ~ /^\.\/staging\/src\// {printf "\t%s => %s %s\n", $1, $1, to}' "$src/go.mod"
    echo ")"
  } >"$D/mod/go.mod"
  cat "$D/mod/go.mod"
  local pkg="k8s.io/component-base/version" cg="k8s.io/client-go/pkg/version" date ld=""
  date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  for p in $pkg $cg; do
    ld+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ld+=" -X $p.gitCommit=0000000000000000000000000000000000000000 -X $p.gitTreeState=clean -X $p.buildDate=$date"
  done
  cd "$D/mod" || return
  gotc "$KUBERNETES_GO_VERSION" mod download k8s.io/kubernetes
  time gotc "$KUBERNETES_GO_VERSION" build -mod=mod -p "$GO_P" -trimpath -tags selinux,notest \
    -ldflags "-s -w$ld" -o "$D/" \
    k8s.io/kubernetes/cmd/kubeadm k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kubectl \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy
  "$D/kubeadm" version -o short
  "$D/kubectl" version --client
}

build_etcd() {
  local v=$ETCD_VERSION
  mkdir -p "$D/mod"
  cat >"$D/mod/go.mod" <<EOF
module scaledapi.local/airgap/etcd

go 1.22

require go.etcd.io/etcd/server/v3 $v

replace (
	go.etcd.io/etcd/api/v3 => go.etcd.io/etcd/api/v3 $v
	go.etcd.io/etcd/client/pkg/v3 => go.etcd.io/etcd/client/pkg/v3 $v
	go.etcd.io/etcd/client/v2 => go.etcd.io/etcd/client/v2 v2.305.${v#v3.5.}
	go.etcd.io/etcd/client/v3 => go.etcd.io/etcd/client/v3 $v
	go.etcd.io/etcd/pkg/v3 => go.etcd.io/etcd/pkg/v3 $v
	go.etcd.io/etcd/raft/v3 => go.etcd.io/etcd/raft/v3 $v
)
EOF
  cd "$D/mod" || return
  gotc "$GO_VERSION" build -mod=mod -p "$GO_P" -trimpath -ldflags "-s -w" -o "$D/etcd" go.etcd.io/etcd/server/v3
  "$D/etcd" --version
}

build_coredns() {
  GOBIN=$D gotc "$GO_VERSION" install -p "$GO_P" -trimpath -ldflags "-s -w" \
    "github.com/coredns/coredns@$COREDNS_VERSION"
  "$D/coredns" -version
}

build_crictl() {
  # A wrapper module, not `go install ...@version`: that asks the proxy for the module's version list,
  # which this proxy refuses for cri-tools. The proxy serves v1.34.0 but its checksum database has no
  # entry for it: skip that one lookup (GONOSUMDB) for this module only; its dependencies are verified.
  # cri-tools v1.34.0 requires Kubernetes staging modules at v0.34.0-rc.2, which the checksum database
  # does not know either: require the same modules at the release $CRICTL_K8S_MODULES_VERSION instead.
  local src
  src=$(GONOSUMDB=sigs.k8s.io/cri-tools moddir "sigs.k8s.io/cri-tools@$CRICTL_VERSION")
  mkdir -p "$D/mod"
  {
    printf 'module scaledapi.local/airgap/crictl\n\ngo 1.25\n\nrequire (\n\tsigs.k8s.io/cri-tools %s\n' "$CRICTL_VERSION"
    awk -v to="$CRICTL_K8S_MODULES_VERSION" \
      '$1 ~ /^k8s\.io\// && $2 ~ /^v0\.[0-9]+\.[0-9]+-(alpha|beta|rc)\./ {printf "\t%s %s\n", $1, to}' "$src/go.mod"
    printf ')\n'
  } >"$D/mod/go.mod"
  cat "$D/mod/go.mod"
  cd "$D/mod" || return
  GONOSUMDB=sigs.k8s.io/cri-tools gotc "$CRICTL_GO_VERSION" build -mod=mod -p "$GO_P" -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" \
    -o "$D/crictl" sigs.k8s.io/cri-tools/cmd/crictl
  "$D/crictl" --version
}

build_localpath() {
  GOBIN=$D gotc "$GO_VERSION" install -p "$GO_P" -trimpath \
    -ldflags "-s -w -X main.VERSION=$LOCAL_PATH_PROVISIONER_VERSION" \
    "github.com/rancher/local-path-provisioner@$LOCAL_PATH_PROVISIONER_VERSION"
  ls -l "$D/local-path-provisioner"
}

build_kindnetd() {
  local dir
  # Upstream kindnetd (separate module of the kind repository), when the module proxy serves it.
  if dir=$(moddir "sigs.k8s.io/kind/images/kindnetd@$KINDNETD_VERSION" 2>"$D/upstream.err"); then
    echo "building upstream kindnetd from $dir"
    (cd "$dir" && gotc "$GO_VERSION" build -p "$GO_P" -trimpath -ldflags "-s -w" -o "$D/kindnetd" ./cmd/kindnetd)
    echo upstream >"$D/flavor"
  else
    cat "$D/upstream.err"
    echo "module proxy does not serve sigs.k8s.io/kind/images/kindnetd@$KINDNETD_VERSION;" \
      "building hack/airgap/kindnetd (kindnetd-compatible fallback)"
    mkdir -p "$D/src"
    cp "$here"/kindnetd/go.mod "$here"/kindnetd/*.go "$D/src/"
    [[ -f $here/kindnetd/go.sum ]] && cp "$here/kindnetd/go.sum" "$D/src/"
    (cd "$D/src" && gotc "$GO_VERSION" build -mod=mod -p "$GO_P" -trimpath -ldflags "-s -w" -o "$D/kindnetd" .)
    echo fallback >"$D/flavor"
  fi
  ls -l "$D/kindnetd"
}

build_helm() {
  # The proxy serves helm's version list, so `go install` by version works. helm's own version variable
  # holds only the minor release ("v4.3") unless the release build sets it: set it as that build does.
  GOBIN=$D gotc "$HELM_GO_VERSION" install -p "$GO_P" -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
  "$D/helm" version
}

build_metricsserver() {
  # Its go.mod has no replace directives and the proxy serves its version list: `go install` by version.
  # gitVersion (client-go's version package, as upstream's Makefile sets it) is what --version reports.
  GOBIN=$D gotc "$GO_VERSION" install -p "$GO_P" -trimpath \
    -ldflags "-s -w -X k8s.io/client-go/pkg/version.gitVersion=$METRICS_SERVER_VERSION" \
    "sigs.k8s.io/metrics-server/cmd/metrics-server@$METRICS_SERVER_VERSION"
  "$D/metrics-server" --version
}

build_pause() {
  gcc -static -Os -Wall -o "$D/pause" "$here/pause.c"
  strip "$D/pause"
  ls -l "$D/pause"
}
