#!/bin/bash
# Build, with no container registry, everything a kind cluster of ScaledApi needs:
# Go binaries from the Go module proxy, images from Debian packages (debootstrap), and a kind node image
# assembled by hand. Cached under $SCALEDAPI_CACHE (default /var/cache/scaledapi) and in Docker's image
# store, keyed by the values in versions.env that each step uses. Writes $SCALEDAPI_CACHE/images.env and
# installs kind and kubectl into $SCALEDAPI_CACHE/bin.
#
# Usage: build.sh [STEP ...]   (no STEP: everything; STEP names build single steps, for development)
#        build.sh --prune      (removes cached outputs and images of keys other than the current ones)
#        build.sh --keys       (prints each step's cache key and whether it is built)
# AIRGAP_VERSIONS=FILE uses another versions file (default: versions.env beside this script).
# One line per step on stdout (with elapsed seconds); each step's full log is $SCALEDAPI_CACHE/logs/STEP.log.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "${AIRGAP_VERSIONS:-$here/versions.env}"

CACHE=${SCALEDAPI_CACHE:-/var/cache/scaledapi}
LOGS=$CACHE/logs
OUT=$CACHE/out
WORK=$CACHE/work
mkdir -p "$LOGS" "$OUT" "$WORK" "$CACHE/bin" "$CACHE/stamps"

export GOMODCACHE=$CACHE/go/mod
export GOCACHE=$CACHE/go/build
export GOPATH=$CACHE/go/path
export GOFLAGS="-buildvcs=false -modcacherw"
export GOPROXY=${GOPROXY:-https://proxy.golang.org,direct}
export CGO_ENABLED=0
export DOCKER_BUILDKIT=0
GO_P=${BUILD_PARALLELISM:-$(nproc)}
IMG_PREFIX=${AIRGAP_IMAGE_PREFIX:-scaledapi-airgap}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

T_ALL=$(date +%s)
say() { echo "[airgap] $*"; }
die() { echo "[airgap] ERROR: $*" >&2; exit 1; }

[[ -s $CA_BUNDLE ]] || die "no CA bundle at $CA_BUNDLE (set CA_BUNDLE)"
CA_HASH=$(sha256sum "$CA_BUNDLE" | cut -c1-16)

# ---------------------------------------------------------------------------------------------------
# Step machinery. key_of STEP VALUE... -> 12 hex digits. A step is done when its stamp exists and its
# outputs (files under $OUT/STEP-KEY, Docker images) are still there.
# Bump a step's REV_* when its recipe changes in a way that must rebuild it.
REV_rootfs=1 REV_kind=1 REV_kubernetes=1 REV_etcd=1 REV_coredns=1 REV_crictl=1 REV_localpath=1
REV_kindnetd=1 REV_pause=1 REV_debian=1 REV_bases=2 REV_kindbase=2 REV_components=1 REV_node=1

key_of() {
  local step=$1; shift
  local rev_var="REV_$step"
  printf '%s\n' "$step" "${!rev_var:-0}" "$@" | sha256sum | cut -c1-12
}

images_exist() {
  local i
  for i in "$@"; do docker image inspect "$i" >/dev/null 2>&1 || return 1; done
}

# run_step STEP KEY FUNCTION [IMAGE...]: runs FUNCTION with $D=$OUT/STEP-KEY unless done already.
run_step() {
  local step=$1 key=$2 fn=$3; shift 3
  local stamp=$CACHE/stamps/$step-$key
  D=$OUT/$step-$key
  if [[ -e $stamp && -d $D ]] && images_exist "$@"; then
    say "$step: cached ($key)"
    return 0
  fi
  local t0; t0=$(date +%s)
  rm -rf "$D"; mkdir -p "$D"
  echo "=== $(date -Is) $step $key" >>"$LOGS/$step.log"
  local rc=0
  # not in an `if`: errexit must stay active inside the step's subshell
  set +e
  ( set -euo pipefail; "$fn" ) >>"$LOGS/$step.log" 2>&1
  rc=$?
  set -e
  if (( rc != 0 )); then
    tail -n 40 "$LOGS/$step.log" >&2
    die "$step failed after $(( $(date +%s) - t0 ))s (log: $LOGS/$step.log)"
  fi
  touch "$stamp"
  say "$step: built in $(( $(date +%s) - t0 ))s ($key)"
  echo "$step $(( $(date +%s) - t0 ))" >>"$LOGS/timings.txt"
}

gotc() { # go with a given toolchain: gotc VERSION args...
  local v=$1; shift
  GOTOOLCHAIN="go$v" go "$@"
}

moddir() { # moddir MODULE@VERSION -> directory in the module cache (downloads it)
  gotc "$GO_VERSION" mod download -json "$1" | jq -er .Dir
}

# ---------------------------------------------------------------------------------------------------
# Keys. Each lists exactly the versions.env values (and other keys) that its output depends on.
K_kind=$(key_of kind "$KIND_VERSION" "$GO_VERSION")
K_kubernetes=$(key_of kubernetes "$KUBERNETES_VERSION" "$KUBERNETES_GO_VERSION")
K_etcd=$(key_of etcd "$ETCD_VERSION" "$GO_VERSION")
K_coredns=$(key_of coredns "$COREDNS_VERSION" "$GO_VERSION")
K_crictl=$(key_of crictl "$CRICTL_VERSION" "$CRICTL_K8S_MODULES_VERSION" "$CRICTL_GO_VERSION")
K_localpath=$(key_of localpath "$LOCAL_PATH_PROVISIONER_VERSION" "$GO_VERSION")
K_kindnetd=$(key_of kindnetd "$KINDNETD_VERSION" "$KINDNETD_FALLBACK_REV" "$GO_VERSION" \
  "$(cat "$here"/kindnetd/*.go "$here"/kindnetd/go.mod 2>/dev/null | sha256sum)")
K_pause=$(key_of pause "$(sha256sum "$here/pause.c" | cut -c1-16)")
K_rootfs=$(key_of rootfs "$DEBIAN_SUITE" "$DEBIAN_MIRROR")
K_debian=$(key_of debian "$K_rootfs" "$CA_HASH")
K_bases=$(key_of bases "$K_debian" "$(sha256sum "$here/iptables-wrapper" | cut -c1-16)")
K_kindbase=$(key_of kindbase "$K_debian" "$KIND_VERSION" "$K_crictl" \
  "$(sha256sum "$here/runc-capfilter" | cut -c1-16)")
K_components=$(key_of components "$K_debian" "$KIND_VERSION" "$K_kubernetes" "$K_etcd" "$ETCD_IMAGE_TAG" \
  "$K_coredns" "$K_localpath" "$K_kindnetd" "$K_pause" "$PAUSE_VERSION")
K_node=$(key_of node "$K_kindbase" "$K_components")

IMG_DEBIAN=$IMG_PREFIX/debian:$DEBIAN_SUITE-$K_debian
IMG_PYTHON=$IMG_PREFIX/python:$DEBIAN_SUITE-$K_bases
IMG_NGINX=$IMG_PREFIX/nginx:$DEBIAN_SUITE-$K_bases
IMG_IPTABLES=$IMG_PREFIX/iptables:$DEBIAN_SUITE-$K_bases
IMG_KINDBASE=$IMG_PREFIX/kind-base:$KIND_VERSION-$K_kindbase
IMG_NODE=$IMG_PREFIX/kind-node:$KUBERNETES_VERSION-$K_node

# ---------------------------------------------------------------------------------------------------
# Go builds.

build_kind() {
  GOBIN=$D gotc "$GO_VERSION" install -p "$GO_P" -trimpath -ldflags "-s -w" "sigs.k8s.io/kind@$KIND_VERSION"
  "$D/kind" version
}

build_kubernetes() {
  local v=$KUBERNETES_VERSION minor src m
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
    for m in $(awk '$2 == "=>" && $3 ~ /^\.\/staging\/src\// {print $1}' "$src/go.mod"); do
      echo "	$m => $m v0.${v#v1.}"
    done
    echo ")"
  } >"$D/mod/go.mod"
  cat "$D/mod/go.mod"
  local pkg="k8s.io/component-base/version" cg="k8s.io/client-go/pkg/version" date ld=""
  date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  for p in $pkg $cg; do
    ld+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ld+=" -X $p.gitCommit=0000000000000000000000000000000000000000 -X $p.gitTreeState=clean -X $p.buildDate=$date"
  done
  cd "$D/mod"
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
  cd "$D/mod"
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
  local src m
  src=$(GONOSUMDB=sigs.k8s.io/cri-tools moddir "sigs.k8s.io/cri-tools@$CRICTL_VERSION")
  mkdir -p "$D/mod"
  {
    printf 'module scaledapi.local/airgap/crictl\n\ngo 1.25\n\nrequire (\n\tsigs.k8s.io/cri-tools %s\n' "$CRICTL_VERSION"
    for m in $(awk '$1 ~ /^k8s\.io\// && $2 ~ /^v0\.[0-9]+\.[0-9]+-(alpha|beta|rc)\./ {print $1}' "$src/go.mod"); do
      printf '\t%s %s\n' "$m" "$CRICTL_K8S_MODULES_VERSION"
    done
    printf ')\n'
  } >"$D/mod/go.mod"
  cat "$D/mod/go.mod"
  cd "$D/mod"
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

build_pause() {
  gcc -static -Os -Wall -o "$D/pause" "$here/pause.c"
  strip "$D/pause"
  ls -l "$D/pause"
}

# ---------------------------------------------------------------------------------------------------
# Debian root file system and images.

build_rootfs() {
  command -v debootstrap >/dev/null || {
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap
  }
  local dir=$WORK/rootfs
  rm -rf "$dir"
  debootstrap --variant=minbase "$DEBIAN_SUITE" "$dir" "$DEBIAN_MIRROR"
  # an image needs no apt caches nor logs
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* "$dir"/var/log/*
  tar -C "$dir" --numeric-owner -cf "$D/rootfs.tar" .
  rm -rf "$dir"
  ls -l "$D/rootfs.tar"
}

# docker_build TAG CONTEXT: classic builder (works with local base images and no registry)
docker_build() {
  docker build --network host -t "$1" "$2"
}

build_debian() {
  # debootstrap minbase + the host CA bundle (TLS to PyPI etc. verifies only with it)
  local ctx=$WORK/debian
  rm -rf "$ctx"; mkdir -p "$ctx"
  docker import "$OUT/rootfs-$K_rootfs/rootfs.tar" "$IMG_PREFIX/debian-rootfs:$K_rootfs"
  cp "$CA_BUNDLE" "$ctx/ca-certificates.crt"
  cat >"$ctx/Dockerfile" <<EOF
FROM $IMG_PREFIX/debian-rootfs:$K_rootfs
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \\
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    LANG=C.UTF-8
CMD ["/bin/bash"]
EOF
  docker_build "$IMG_DEBIAN" "$ctx"
  docker rmi "$IMG_PREFIX/debian-rootfs:$K_rootfs" >/dev/null || true
  rm -rf "$ctx"
}

# apt_install PACKAGES...: a RUN line installing Debian packages, keeping the host CA bundle
apt_run() {
  cat <<EOF
RUN cp /etc/ssl/certs/ca-certificates.crt /tmp/host-ca.crt \\
 && apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $* \\
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/log/apt/* /var/log/dpkg.log \\
 && mkdir -p /etc/ssl/certs && cp /tmp/host-ca.crt /etc/ssl/certs/ca-certificates.crt && rm /tmp/host-ca.crt
EOF
}

build_bases() {
  local ctx=$WORK/bases
  rm -rf "$ctx"; mkdir -p "$ctx/python" "$ctx/nginx" "$ctx/iptables"
  {
    echo "FROM $IMG_DEBIAN"
    apt_run python3 python3-venv python3-pip ca-certificates
    echo "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt PYTHONUNBUFFERED=1"
    echo 'RUN python3 --version && python3 -m venv /tmp/v && /tmp/v/bin/pip --version && rm -rf /tmp/v'
    echo 'CMD ["python3"]'
  } >"$ctx/python/Dockerfile"
  {
    echo "FROM $IMG_DEBIAN"
    # python3, not python3-minimal: the proxy entrypoint needs json, ssl, http.client (libpython3-stdlib)
    apt_run nginx python3 ca-certificates
    # uid/gid 101 "nginx" (what the official nginx image uses), for running nginx as non-root
    cat <<'EOF'
RUN set -e; \
    if ! getent group nginx >/dev/null; then \
      if getent group 101 >/dev/null; then groupmod -n nginx "$(getent group 101 | cut -d: -f1)"; \
      else groupadd -r -g 101 nginx; fi; \
    fi; \
    if ! getent passwd nginx >/dev/null; then \
      if getent passwd 101 >/dev/null; then usermod -l nginx -g 101 -d /nonexistent -s /usr/sbin/nologin "$(getent passwd 101 | cut -d: -f1)"; \
      else useradd -r -u 101 -g 101 -d /nonexistent -s /usr/sbin/nologin -M nginx; fi; \
    fi; \
    id nginx; nginx -v; python3 -c "import json, ssl, http.client, urllib.request"; \
    rm -f /etc/nginx/sites-enabled/default
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
EOF
  } >"$ctx/nginx/Dockerfile"
  {
    echo "FROM $IMG_DEBIAN"
    apt_run iptables nftables conntrack iproute2 kmod ca-certificates
    echo 'COPY iptables-wrapper /usr/sbin/iptables-wrapper'
    cat <<'EOF'
RUN set -e; for f in iptables ip6tables; do \
      update-alternatives --install /usr/sbin/$f $f /usr/sbin/iptables-wrapper 100 \
        --slave /usr/sbin/$f-restore $f-restore /usr/sbin/iptables-wrapper \
        --slave /usr/sbin/$f-save $f-save /usr/sbin/iptables-wrapper; \
      update-alternatives --set $f /usr/sbin/iptables-wrapper; \
    done
EOF
  } >"$ctx/iptables/Dockerfile"
  install -m 0755 "$here/iptables-wrapper" "$ctx/iptables/iptables-wrapper"
  docker_build "$IMG_PYTHON" "$ctx/python"
  docker_build "$IMG_NGINX" "$ctx/nginx"
  docker_build "$IMG_IPTABLES" "$ctx/iptables"
  rm -rf "$ctx"
}

kind_dir() { moddir "sigs.k8s.io/kind@$KIND_VERSION"; }

build_kindbase() {
  local kd ctx=$WORK/kindbase
  kd=$(kind_dir)
  rm -rf "$ctx"; mkdir -p "$ctx/files"
  # kind's own files for the base image, from the kind module (modes as kind's Dockerfile sets them)
  cp -r "$kd/images/base/files/." "$ctx/files/"
  chmod -R u+w "$ctx/files"
  find "$ctx/files" -type d -exec chmod 0755 {} +
  find "$ctx/files" -type f -exec chmod 0644 {} +
  chmod 0755 "$ctx"/files/usr/local/bin/* "$ctx"/files/kind/bin/*
  install -D -m 0755 "$here/runc-capfilter" "$ctx/files/usr/local/sbin/runc-capfilter"
  install -m 0755 "$OUT/crictl-$K_crictl/crictl" "$ctx/files/usr/local/bin/crictl"
  {
    echo "FROM $IMG_DEBIAN"
    # Node containerd config changes (kind's config.toml otherwise):
    # - runc is called through runc-capfilter (privileged pods ask for capabilities the host may lack);
    # - restrict_oom_score_adj = true: without CAP_SYS_RESOURCE no process may lower oom_score_adj, and
    #   the kubelet asks -998 for critical pods, which fails their sandbox ("can't get final child's PID
    #   from pipe"); containerd then clamps the value to its own. kind sets the same for rootless nodes.
    # kind's package list (images/base/Dockerfile), with Debian's containerd, runc and CNI plugins
    # instead of release tarballs; without nfs/iscsi/fuse-overlayfs (not used here).
    apt_run systemd dbus conntrack iptables nftables iproute2 ethtool util-linux mount kmod \
      libseccomp2 pigz bash ca-certificates curl jq procps socat ebtables \
      containerd runc containernetworking-plugins
    cat <<'EOF'
COPY files/ /
RUN set -e \
 && find /lib/systemd/system/sysinit.target.wants/ -name "systemd-tmpfiles-setup.service" -delete \
 && rm -f /lib/systemd/system/multi-user.target.wants/* \
 && rm -f /etc/systemd/system/*.wants/* \
 && rm -f /lib/systemd/system/local-fs.target.wants/* \
 && rm -f /lib/systemd/system/sockets.target.wants/*udev* \
 && rm -f /lib/systemd/system/sockets.target.wants/*initctl* \
 && rm -f /lib/systemd/system/basic.target.wants/* \
 && echo "ReadKMsg=no" >> /etc/systemd/journald.conf \
 && ln -sf "$(command -v systemd || echo /lib/systemd/systemd)" /sbin/init \
 && for b in containerd ctr containerd-shim-runc-v2; do ln -sf "/usr/bin/$b" "/usr/local/bin/$b"; done \
 && mkdir -p /opt/cni/bin && for p in /usr/lib/cni/*; do ln -sf "$p" "/opt/cni/bin/$(basename "$p")"; done \
 && sed -i 's|^\( *\)SystemdCgroup = true|&\n\1BinaryName = "/usr/local/sbin/runc-capfilter"|' /etc/containerd/config.toml \
 && grep -q 'BinaryName = "/usr/local/sbin/runc-capfilter"' /etc/containerd/config.toml \
 && sed -i 's/restrict_oom_score_adj = false/restrict_oom_score_adj = true/' /etc/containerd/config.toml \
 && grep -q 'restrict_oom_score_adj = true' /etc/containerd/config.toml \
 && ctr oci spec \
      | jq '.hooks.createContainer[.hooks.createContainer| length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \
      | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json \
 && containerd --version && runc --version && crictl --version \
 && systemctl enable kubelet.service containerd.service undo-mount-hacks.service \
 && systemctl mask systemd-binfmt.service \
 && mkdir -p /etc/kubernetes/manifests
ENV container=docker
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]
EOF
  } >"$ctx/Dockerfile"
  docker_build "$IMG_KINDBASE" "$ctx"
  rm -rf "$ctx"
}

# component images: the names kubeadm and kind's manifests ask for
component_refs() { # prints "NAME REF" lines
  local kd=$1 kubeadm=$2 ref
  while read -r ref; do
    case $ref in
      */kube-apiserver:*) echo "kube-apiserver $ref" ;;
      */kube-controller-manager:*) echo "kube-controller-manager $ref" ;;
      */kube-scheduler:*) echo "kube-scheduler $ref" ;;
      */kube-proxy:*) echo "kube-proxy $ref" ;;
      */etcd:*) echo "etcd $ref" ;;
      */coredns:*) echo "coredns $ref" ;;
      */pause:*) echo "pause $ref" ;;
      *) echo "unknown $ref" ;;
    esac
  done < <("$kubeadm" config images list --kubernetes-version "$KUBERNETES_VERSION" 2>/dev/null)
  echo "kindnetd $(python3 "$here/kind_consts.py" kindnetdImage "$kd/pkg/build/nodeimage/const_cni.go")"
  echo "local-path-provisioner $(python3 "$here/kind_consts.py" storageProvisionerImage "$kd/pkg/build/nodeimage/const_storage.go")"
  echo "local-path-helper $(python3 "$here/kind_consts.py" storageHelperImage "$kd/pkg/build/nodeimage/const_storage.go")"
}

build_components() {
  local kd kbin=$OUT/kubernetes-$K_kubernetes ctx=$WORK/components name ref
  kd=$(kind_dir)
  rm -rf "$ctx"; mkdir -p "$ctx"
  component_refs "$kd" "$kbin/kubeadm" | tee "$D/refs.txt"
  ! grep -q '^unknown ' "$D/refs.txt" || { echo "kubeadm asks for an image this script does not build"; exit 1; }
  grep -q " .*:$ETCD_IMAGE_TAG\$" "$D/refs.txt" || { echo "kubeadm wants another etcd than $ETCD_IMAGE_TAG"; exit 1; }
  grep -q "/pause:$PAUSE_VERSION\$" "$D/refs.txt" || { echo "kubeadm wants another pause than $PAUSE_VERSION"; exit 1; }
  grep -q "/coredns:$COREDNS_VERSION\$" "$D/refs.txt" || { echo "kubeadm wants another coredns than $COREDNS_VERSION"; exit 1; }

  # a tiny root for static binaries: CA bundle, passwd/group, /tmp
  mkdir -p "$ctx/static/root/etc/ssl/certs" "$ctx/static/root/tmp"
  chmod 1777 "$ctx/static/root/tmp"
  cp "$CA_BUNDLE" "$ctx/static/root/etc/ssl/certs/ca-certificates.crt"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$ctx/static/root/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$ctx/static/root/etc/group"
  printf 'hosts: files dns\n' >"$ctx/static/root/etc/nsswitch.conf"
  printf 'FROM scratch\nCOPY root/ /\nENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n' >"$ctx/static/Dockerfile"
  docker_build "$IMG_PREFIX/static:$K_components" "$ctx/static"

  mkdir -p "$D/images"
  while read -r name ref; do
    local c=$ctx/$name
    mkdir -p "$c"
    case $name in
      kube-apiserver|kube-controller-manager|kube-scheduler)
        cp "$kbin/$name" "$c/"
        printf 'FROM %s\nCOPY %s /usr/local/bin/%s\nENTRYPOINT ["/usr/local/bin/%s"]\n' \
          "$IMG_PREFIX/static:$K_components" "$name" "$name" "$name" >"$c/Dockerfile" ;;
      kube-proxy)
        cp "$kbin/kube-proxy" "$c/"
        printf 'FROM %s\nCOPY kube-proxy /usr/local/bin/kube-proxy\nENTRYPOINT ["/usr/local/bin/kube-proxy"]\n' \
          "$IMG_IPTABLES" >"$c/Dockerfile" ;;
      etcd)
        cp "$OUT/etcd-$K_etcd/etcd" "$c/"
        printf 'FROM %s\nCOPY etcd /usr/local/bin/etcd\nENV ETCD_UNSUPPORTED_ARCH=\nCMD ["/usr/local/bin/etcd"]\n' \
          "$IMG_PREFIX/static:$K_components" >"$c/Dockerfile" ;;
      coredns)
        cp "$OUT/coredns-$K_coredns/coredns" "$c/"
        printf 'FROM %s\nCOPY coredns /coredns\nEXPOSE 53 53/udp\nENTRYPOINT ["/coredns"]\n' \
          "$IMG_PREFIX/static:$K_components" >"$c/Dockerfile" ;;
      pause)
        cp "$OUT/pause-$K_pause/pause" "$c/"
        printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$c/Dockerfile" ;;
      kindnetd)
        cp "$OUT/kindnetd-$K_kindnetd/kindnetd" "$c/"
        printf 'FROM %s\nCOPY kindnetd /bin/kindnetd\nCMD ["/bin/kindnetd"]\n' "$IMG_IPTABLES" >"$c/Dockerfile" ;;
      local-path-provisioner)
        cp "$OUT/localpath-$K_localpath/local-path-provisioner" "$c/"
        printf 'FROM %s\nCOPY local-path-provisioner /usr/local/bin/local-path-provisioner\nENTRYPOINT ["/usr/local/bin/local-path-provisioner"]\n' \
          "$IMG_PREFIX/static:$K_components" >"$c/Dockerfile" ;;
      local-path-helper)
        # needs sh, mkdir, rm: the Debian minbase image
        printf 'FROM %s\nCMD ["/bin/sh"]\n' "$IMG_DEBIAN" >"$c/Dockerfile" ;;
    esac
    docker_build "$ref" "$c"
    docker save -o "$D/images/$name.tar" "$ref"
  done <"$D/refs.txt"
  # the manifests kind applies at cluster creation, from the kind module
  python3 "$here/kind_consts.py" defaultCNIManifest "$kd/pkg/build/nodeimage/const_cni.go" >"$D/default-cni.yaml"
  python3 "$here/kind_consts.py" defaultStorageManifest "$kd/pkg/build/nodeimage/const_storage.go" >"$D/default-storage.yaml"
  rm -rf "$ctx"
  ls -l "$D/images"
}

build_node() {
  local kbin=$OUT/kubernetes-$K_kubernetes comp=$OUT/components-$K_components cid t deadline
  cid=$(docker run -d --privileged --entrypoint /bin/sleep "$IMG_KINDBASE" infinity)
  # the step runs in its own subshell: EXIT fires on success and on errexit alike
  trap 'docker rm -f "$cid" >/dev/null 2>&1 || true' EXIT
  docker cp "$kbin/kubeadm" "$cid:/usr/bin/kubeadm"
  docker cp "$kbin/kubelet" "$cid:/usr/bin/kubelet"
  docker cp "$kbin/kubectl" "$cid:/usr/bin/kubectl"
  docker exec "$cid" mkdir -p /kind/manifests /kind/import
  docker cp "$comp/default-cni.yaml" "$cid:/kind/manifests/default-cni.yaml"
  docker cp "$comp/default-storage.yaml" "$cid:/kind/manifests/default-storage.yaml"
  echo "$KUBERNETES_VERSION" >"$D/version"
  docker cp "$D/version" "$cid:/kind/version"
  for t in "$comp"/images/*.tar; do docker cp "$t" "$cid:/kind/import/"; done
  docker exec "$cid" sh -c 'chmod 0755 /usr/bin/kubeadm /usr/bin/kubelet /usr/bin/kubectl; chmod 0644 /kind/version /kind/manifests/*'
  docker exec -d "$cid" sh -c 'containerd >/tmp/containerd.log 2>&1'
  deadline=$(( $(date +%s) + 60 ))
  until docker exec "$cid" ctr version >/dev/null 2>&1; do
    (( $(date +%s) < deadline )) || { docker exec "$cid" cat /tmp/containerd.log; exit 1; }
    sleep 0.5
  done
  for t in "$comp"/images/*.tar; do
    docker exec "$cid" ctr -n k8s.io images import --all-platforms --no-unpack --digests "/kind/import/$(basename "$t")"
  done
  docker exec "$cid" ctr -n k8s.io images ls -q | tee "$D/node-images.txt"
  docker exec "$cid" sh -c 'pkill containerd; while pgrep -x containerd >/dev/null; do sleep 0.2; done; rm -rf /kind/import /tmp/containerd.log'
  # ENV container=docker and STOPSIGNAL come from the base image's config, which the container keeps
  docker commit \
    --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' \
    --change 'CMD []' \
    "$cid" "$IMG_NODE"
  docker image inspect -f '{{json .Config.Entrypoint}} {{json .Config.Cmd}} {{.Config.StopSignal}} {{json .Config.Env}}' "$IMG_NODE"
}

# ---------------------------------------------------------------------------------------------------
prune() {
  local current=" rootfs-$K_rootfs kind-$K_kind kubernetes-$K_kubernetes etcd-$K_etcd coredns-$K_coredns"
  current+=" crictl-$K_crictl localpath-$K_localpath kindnetd-$K_kindnetd pause-$K_pause debian-$K_debian"
  current+=" bases-$K_bases kindbase-$K_kindbase components-$K_components node-$K_node "
  local p img keep_imgs
  for p in "$OUT"/* "$CACHE"/stamps/*; do
    [[ -e $p ]] || continue
    [[ $current == *" $(basename "$p") "* ]] && continue
    say "prune: $p"; rm -rf "$p"
  done
  keep_imgs=" $IMG_DEBIAN $IMG_PYTHON $IMG_NGINX $IMG_IPTABLES $IMG_KINDBASE $IMG_NODE $IMG_PREFIX/static:$K_components "
  while read -r img; do
    [[ $keep_imgs == *" $img "* ]] && continue
    say "prune: image $img"; docker rmi "$img" >/dev/null || true
  done < <(docker images --format '{{.Repository}}:{{.Tag}}' | grep "^$IMG_PREFIX/" || true)
  rm -rf "$WORK"
  du -sh "$CACHE"
}

want=("$@")
if [[ ${want[0]:-} == --prune ]]; then
  prune
  exit 0
fi
if [[ ${want[0]:-} == --keys ]]; then # the cache key of every step, and whether it is built
  for s in rootfs kind kubernetes etcd coredns crictl localpath kindnetd pause debian bases kindbase components node; do
    k="K_$s"
    state=missing; [[ -e $CACHE/stamps/$s-${!k} ]] && state=built
    printf '%-11s %s %s\n' "$s" "${!k}" "$state"
  done
  exit 0
fi
wants() { # wants STEP: true when STEP (or everything) was asked for
  (( ${#want[@]} == 0 )) && return 0
  local w; for w in "${want[@]}"; do [[ $w == "$1" ]] && return 0; done; return 1
}

say "cache $CACHE; keys: kubernetes=$K_kubernetes node=$K_node"

# Two lanes: Go builds (CPU) in the background, Debian/Docker work (network, disk) in the foreground.
go_lane() {
  run_step kind "$K_kind" build_kind
  run_step kubernetes "$K_kubernetes" build_kubernetes
  run_step etcd "$K_etcd" build_etcd
  run_step coredns "$K_coredns" build_coredns
  run_step crictl "$K_crictl" build_crictl
  run_step localpath "$K_localpath" build_localpath
  run_step kindnetd "$K_kindnetd" build_kindnetd
  run_step pause "$K_pause" build_pause
}
debian_lane() {
  run_step rootfs "$K_rootfs" build_rootfs
  run_step debian "$K_debian" build_debian "$IMG_DEBIAN"
  run_step bases "$K_bases" build_bases "$IMG_PYTHON" "$IMG_NGINX" "$IMG_IPTABLES"
}

if (( ${#want[@]} )); then
  # single steps, in dependency order, for development
  for s in kind kubernetes etcd coredns crictl localpath kindnetd pause rootfs; do
    if wants "$s"; then k="K_$s"; run_step "$s" "${!k}" "build_$s"; fi
  done
  wants debian && run_step debian "$K_debian" build_debian "$IMG_DEBIAN"
  wants bases && run_step bases "$K_bases" build_bases "$IMG_PYTHON" "$IMG_NGINX" "$IMG_IPTABLES"
  wants kindbase && run_step kindbase "$K_kindbase" build_kindbase "$IMG_KINDBASE"
  wants components && run_step components "$K_components" build_components
  wants node && run_step node "$K_node" build_node "$IMG_NODE"
  exit 0
fi

"$here/docker.sh"
go_lane &
go_pid=$!
debian_ok=0
debian_lane && debian_ok=1
wait "$go_pid" || die "a Go build failed (see $LOGS)"
(( debian_ok )) || die "a Debian/image step failed (see $LOGS)"
run_step kindbase "$K_kindbase" build_kindbase "$IMG_KINDBASE"
run_step components "$K_components" build_components
run_step node "$K_node" build_node "$IMG_NODE"

# Go's build cache (~5 GB after a cold build) only speeds up recompiling; every output is kept under
# $OUT and keyed, so drop it unless asked to keep it. The module cache (~3.5 GB) stays: a changed version
# then downloads only the modules that changed.
if [[ ${AIRGAP_KEEP_GO_BUILD_CACHE:-0} != 1 && -d $GOCACHE ]]; then
  rm -rf "$GOCACHE"
fi

install -m 0755 "$OUT/kind-$K_kind/kind" "$CACHE/bin/kind"
install -m 0755 "$OUT/kubernetes-$K_kubernetes/kubectl" "$CACHE/bin/kubectl"
cat >"$CACHE/images.env.tmp" <<EOF
# written by hack/airgap/build.sh $(date -Is)
KIND_NODE_IMAGE=$IMG_NODE
PYTHON_BASE=$IMG_PYTHON
NGINX_BASE=$IMG_NGINX
KIND_VERSION=$KIND_VERSION
KUBERNETES_VERSION=$KUBERNETES_VERSION
SCALEDAPI_BIN=$CACHE/bin
EOF
mv "$CACHE/images.env.tmp" "$CACHE/images.env"
say "done in $(( $(date +%s) - T_ALL ))s: $CACHE/images.env, kind and kubectl in $CACHE/bin"
