# shellcheck shell=bash
# shellcheck disable=SC2154 # here, OUT, W, D, K_<step> (compute_keys) and IMG_* come from build.sh
# Steps that build Docker images: the Debian root file system, the images of images/<name>/ (one folder
# per image, as kind keeps them), the component images the node runs, and the kind node image itself.
# Each writes its files into $D (see lib/steps.sh).

kind_dir() { moddir "sigs.k8s.io/kind@$KIND_VERSION"; }

# image_build TAG CONTEXT [--build-arg NAME=VALUE...]: the classic builder, which uses local base images
# as they are (no registry). --force-rm: a failed build leaves no intermediate container behind.
image_build() {
  local tag=$1 ctx=$2
  shift 2
  docker build --network host --force-rm "$@" -t "$tag" "$ctx"
}

# context NAME FOLDER: a build context $W/NAME holding a copy of FOLDER; prints its path. ($W is the
# step's scratch folder, which run_step removes.)
context() {
  local ctx=$W/$1
  rm -rf "$ctx"
  mkdir -p "$ctx"
  cp -r "$2/." "$ctx/"
  echo "$ctx"
}

build_rootfs() {
  command -v debootstrap >/dev/null || {
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap
  }
  local dir=$W/rootfs
  debootstrap --variant=minbase "$DEBIAN_SUITE" "$dir" "$DEBIAN_MIRROR"
  # an image needs no apt caches nor logs
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* "$dir"/var/log/*
  tar -C "$dir" --numeric-owner -cf "$D/rootfs.tar" .
  ls -l "$D/rootfs.tar"
}

build_debian() {
  local ctx rootfs=$IMG_PREFIX/debian-rootfs:$K_rootfs
  ctx=$(context debian "$here/images/debian")
  cp "$CA_BUNDLE" "$ctx/ca-certificates.crt"
  docker import "$OUT/rootfs-$K_rootfs/rootfs.tar" "$rootfs"
  defer docker rmi "$rootfs"
  image_build "$IMG_DEBIAN" "$ctx" --build-arg "ROOTFS=$rootfs"
}

build_python() {
  image_build "$IMG_PYTHON" "$(context python "$here/images/python")" --build-arg "BASE=$IMG_DEBIAN"
}

build_nginx() {
  image_build "$IMG_NGINX" "$(context nginx "$here/images/nginx")" --build-arg "BASE=$IMG_DEBIAN"
}

build_iptables() {
  image_build "$IMG_IPTABLES" "$(context iptables "$here/images/iptables")" --build-arg "BASE=$IMG_DEBIAN"
}

build_kindbase() {
  local kd ctx
  kd=$(kind_dir)
  ctx=$(context kindbase "$here/images/kind-base")
  # kind's own files for the base image, from the kind module (modes as kind's Dockerfile sets them:
  # the module cache drops exec bits)
  cp -r "$kd/images/base/files" "$ctx/files"
  chmod -R u+w "$ctx/files"
  find "$ctx/files" -type d -exec chmod 0755 {} +
  find "$ctx/files" -type f -exec chmod 0644 {} +
  chmod 0755 "$ctx"/files/usr/local/bin/* "$ctx"/files/kind/bin/*
  install -m 0755 "$here/runc-capfilter" "$ctx/runc-capfilter"
  install -m 0755 "$OUT/crictl-$K_crictl/crictl" "$ctx/crictl"
  image_build "$IMG_KINDBASE" "$ctx" --build-arg "BASE=$IMG_DEBIAN"
}

# component_refs KIND_DIR KUBEADM: "NAME REF" lines, the image references kubeadm and kind's manifests use
component_refs() {
  local kd=$1 kubeadm=$2 ref name
  while read -r ref; do
    case $ref in
      */kube-apiserver:* | */kube-controller-manager:* | */kube-scheduler:* | */kube-proxy:* | */etcd:* | \
        */coredns:* | */pause:*)
        name=${ref##*/}
        echo "${name%%:*} $ref"
        ;;
      *) echo "unknown $ref" ;;
    esac
  done < <("$kubeadm" config images list --kubernetes-version "$KUBERNETES_VERSION" 2>/dev/null)
  echo "kindnetd $(python3 "$here/kind_consts.py" kindnetdImage "$kd/pkg/build/nodeimage/const_cni.go")"
  echo "local-path-provisioner $(python3 "$here/kind_consts.py" storageProvisionerImage "$kd/pkg/build/nodeimage/const_storage.go")"
  echo "local-path-helper $(python3 "$here/kind_consts.py" storageHelperImage "$kd/pkg/build/nodeimage/const_storage.go")"
  # Not asked for by kubeadm nor kind: preloaded so that hack/up.sh can deploy it with no registry, under
  # the name upstream's manifest uses.
  echo "metrics-server registry.k8s.io/metrics-server/metrics-server:$METRICS_SERVER_VERSION"
}

# component_input NAME: "BINARY BASE" of a component image (BASE "-" for FROM scratch)
component_input() {
  local kbin=$OUT/kubernetes-$K_kubernetes static=$IMG_PREFIX/static:$K_components
  case $1 in
    kube-apiserver | kube-controller-manager | kube-scheduler) echo "$kbin/$1 $static" ;;
    kube-proxy) echo "$kbin/kube-proxy $IMG_IPTABLES" ;;
    etcd) echo "$OUT/etcd-$K_etcd/etcd $static" ;;
    coredns) echo "$OUT/coredns-$K_coredns/coredns $static" ;;
    pause) echo "$OUT/pause-$K_pause/pause -" ;;
    kindnetd) echo "$OUT/kindnetd-$K_kindnetd/kindnetd $IMG_IPTABLES" ;;
    local-path-provisioner) echo "$OUT/localpath-$K_localpath/local-path-provisioner $static" ;;
    local-path-helper) echo "- $IMG_DEBIAN" ;;
    metrics-server) echo "$OUT/metricsserver-$K_metricsserver/metrics-server $static" ;;
    *) return 1 ;;
  esac
}

# The component images, saved as tars for the node image. They carry the names kubeadm and kind ask
# for; the tags are removed from the host's Docker afterwards (the tars are the output).
build_components() {
  local kd ctx static=$IMG_PREFIX/static:$K_components name ref binary base
  kd=$(kind_dir)
  component_refs "$kd" "$OUT/kubernetes-$K_kubernetes/kubeadm" | tee "$D/refs.txt"
  ! grep -q '^unknown ' "$D/refs.txt" || { echo "kubeadm asks for an image this script does not build"; exit 1; }
  grep -q " .*:$ETCD_IMAGE_TAG\$" "$D/refs.txt" || { echo "kubeadm wants another etcd than $ETCD_IMAGE_TAG"; exit 1; }
  grep -q "/pause:$PAUSE_VERSION\$" "$D/refs.txt" || { echo "kubeadm wants another pause than $PAUSE_VERSION"; exit 1; }
  grep -q "/coredns:$COREDNS_VERSION\$" "$D/refs.txt" || { echo "kubeadm wants another coredns than $COREDNS_VERSION"; exit 1; }

  ctx=$(context static "$here/images/static")
  mkdir -p "$ctx/root/etc/ssl/certs" "$ctx/root/tmp"
  chmod 1777 "$ctx/root/tmp"
  cp "$CA_BUNDLE" "$ctx/root/etc/ssl/certs/ca-certificates.crt"
  image_build "$static" "$ctx"
  defer docker rmi "$static"

  mkdir -p "$D/images"
  while read -r name ref; do
    read -r binary base < <(component_input "$name")
    ctx=$(context "component-$name" "$here/images/components/$name")
    [[ $binary == - ]] || cp "$binary" "$ctx/"
    if [[ $base == - ]]; then
      image_build "$ref" "$ctx"
    else
      image_build "$ref" "$ctx" --build-arg "BASE=$base"
    fi
    defer docker rmi "$ref"
    docker save -o "$D/images/$name.tar" "$ref"
  done <"$D/refs.txt"
  # the manifests kind applies at cluster creation, from the kind module
  python3 "$here/kind_consts.py" defaultCNIManifest "$kd/pkg/build/nodeimage/const_cni.go" >"$D/default-cni.yaml"
  python3 "$here/kind_consts.py" defaultStorageManifest "$kd/pkg/build/nodeimage/const_storage.go" >"$D/default-storage.yaml"
  ls -l "$D/images"
}

# The node image: kind's base with the Kubernetes binaries, kind's manifests and the component images
# imported into containerd, assembled in a helper container and committed (kind build node-image
# cannot work offline).
build_node() {
  local kbin=$OUT/kubernetes-$K_kubernetes comp=$OUT/components-$K_components cid t deadline
  cid=$(docker run -d --privileged --entrypoint /bin/sleep "$IMG_KINDBASE" infinity)
  defer docker rm -f "$cid"
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
  deadline=$(($(date +%s) + 60))
  until docker exec "$cid" ctr version >/dev/null 2>&1; do
    (($(date +%s) < deadline)) || { docker exec "$cid" cat /tmp/containerd.log; exit 1; }
    sleep 0.5 # poll interval
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
