#!/usr/bin/env bash
# Builds the bed's images without a Docker daemon (buildah, Debian package) and pushes
# them, and the Helm chart, to the OCI registry at $REGISTRY (host:port, plain HTTP;
# hack/cluster.sh starts one on 127.0.0.1 and runs this inside its namespaces).
#
#   hack/image.sh operator [--tag TAG] [--label KEY=VALUE]...
#       the operator image from the release binaries (cargo build --release), with the
#       Dockerfile's runtime layout: /usr/local/bin/{ads-export-operator,ads-emulator},
#       uid/gid 65532, no shell, CA certificates, EXPOSE 8080,
#       ENTRYPOINT ["/usr/local/bin/ads-export-operator"], CMD ["run"], and
#       org.opencontainers.image.* labels. Pushed as $REGISTRY/ads-export-operator:TAG
#       (default: the crate version). The Dockerfile stays what users build from;
#       tests/cluster checks that the two agree.
#   hack/image.sh pause
#       the pod sandbox image from target/testbed/bin/pause (hack/build-testbed.sh),
#       pushed as $REGISTRY/pause:$PAUSE_VERSION.
#   hack/image.sh chart
#       `helm package` of charts/ads-export-operator, `helm push` to oci://$REGISTRY/charts.
#
# Prints the pushed reference on stdout. IMAGE_BINARIES_DIR (default <repo>/target/release)
# is where the operator image's binaries come from. buildah's storage lives in $IMAGE_STATE_DIR
# (default <repo>/target/image/buildah, vfs driver): nothing is written to the host's
# container storage. Why buildah: it builds OCI images from a plain directory tree
# with no daemon and no RUN step (so no shell is needed in the image), and pushes
# them to a registry itself; Debian ships it.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$repo/target/testbed/bin"
state="$(realpath -m "${IMAGE_STATE_DIR:-$repo/target/image/buildah}")"
binaries="${IMAGE_BINARIES_DIR:-$repo/target/release}"
# shellcheck source=versions.env
source "$repo/hack/versions.env"

say() { printf 'image: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

REGISTRY="${REGISTRY:-${CLUSTER_REGISTRY:-}}" # (hack/cluster.sh env exports CLUSTER_REGISTRY)
: "${REGISTRY:?set REGISTRY=host:port of the registry}"
# helm's registry login/cache dirs stay under the state dir too, not in $HOME.
export HELM_CACHE_HOME="${HELM_CACHE_HOME:-$state/helm/cache}" HELM_CONFIG_HOME="${HELM_CONFIG_HOME:-$state/helm/config}"
export HELM_DATA_HOME="${HELM_DATA_HOME:-$state/helm/data}"
bah() { buildah --root "$state/root" --runroot "$state/run" --storage-driver vfs "$@"; }

crate_field() { sed -n "s/^$1 = \"\\(.*\\)\"/\\1/p" "$repo/Cargo.toml" | head -n1; }

# Copies <file> and every shared library it loads (ldd) into <rootfs>, at their paths.
copy_with_libs() { # <rootfs> <file> <dest path>
  local lib
  install -D -m 0755 "$2" "$1$3"
  while read -r lib; do
    [[ -n "$lib" ]] && install -D -m 0755 "$(realpath "$lib")" "$1$lib"
  done < <(ldd "$2" | grep -o '/[^ ]*' | sort -u)
}

# The runtime tree of the Dockerfile's distroless/cc-debian12:nonroot stage, from
# this machine's Debian: glibc and libgcc (as ldd lists them), CA certificates,
# passwd/group with nonroot (65532), /tmp; no shell, no package manager.
operator_rootfs() { # <rootfs>
  local r="$1" b
  for b in ads-export-operator ads-emulator; do
    [[ -x "$binaries/$b" ]] || die "$binaries/$b missing (cargo build --release --locked --bin ads-export-operator --bin ads-emulator)"
    copy_with_libs "$r" "$binaries/$b" "/usr/local/bin/$b"
  done
  install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/ca-certificates.crt"
  mkdir -p "$r/tmp" "$r/home/nonroot"
  chmod 1777 "$r/tmp"
  chown 65532:65532 "$r/home/nonroot"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$r/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$r/etc/group"
  [[ ! -e "$r/bin/sh" && ! -e "$r/usr/bin/sh" ]] || die "the image must hold no shell"
}

# Commits the working container <ctr> as <ref> and pushes it (OCI format).
commit_and_push() { # <ctr> <ref>
  bah commit --quiet --format oci --rm "$1" "$2" >/dev/null
  bah push --quiet --tls-verify=false "$2" "docker://$2"
  bah rmi "$2" >/dev/null 2>&1 || true
  say "pushed $2"
  echo "$2"
}

cmd_operator() {
  local tag="" labels=() version ctr rootfs
  version="$(crate_field version)"
  while (($#)); do
    case "$1" in
      --tag) tag="${2:?--tag needs a value}"; shift 2 ;;
      --label) labels+=("${2:?--label needs KEY=VALUE}"); shift 2 ;;
      *) die "operator: unknown argument $1" ;;
    esac
  done
  tag="${tag:-$version}"
  rootfs="$(mktemp -d)"
  trap 'rm -rf "$rootfs"' RETURN
  operator_rootfs "$rootfs"
  ctr="$(bah from --quiet scratch)"
  bah copy --quiet "$ctr" "$rootfs/" / >/dev/null
  local cfg=(
    --user 65532:65532 --port 8080/tcp --workingdir / # (docker build records EXPOSE 8080 as 8080/tcp)
    --entrypoint '["/usr/local/bin/ads-export-operator"]' --cmd run
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
    --label "org.opencontainers.image.title=$(crate_field name)"
    --label "org.opencontainers.image.description=$(crate_field description)"
    --label "org.opencontainers.image.version=$version"
    --label "org.opencontainers.image.licenses=$(crate_field license)"
    --label "org.opencontainers.image.revision=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)"
  )
  local l
  for l in "${labels[@]}"; do cfg+=(--label "$l"); done
  bah config "${cfg[@]}" "$ctr"
  commit_and_push "$ctr" "$REGISTRY/ads-export-operator:$tag"
}

cmd_pause() {
  local ctr
  [[ -x "$bin/pause" ]] || die "$bin/pause missing (hack/build-testbed.sh)"
  ctr="$(bah from --quiet scratch)"
  bah copy --quiet --chmod 0755 "$ctr" "$bin/pause" /pause >/dev/null
  bah config --entrypoint '["/pause"]' --user 65535:65535 \
    --label "org.opencontainers.image.version=$PAUSE_VERSION" "$ctr"
  commit_and_push "$ctr" "$REGISTRY/pause:$PAUSE_VERSION"
}

cmd_chart() {
  local out tgz
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' RETURN
  "$bin/helm" package "$repo/charts/ads-export-operator" --destination "$out" >/dev/null
  tgz="$(ls "$out"/*.tgz)"
  "$bin/helm" push "$tgz" "oci://$REGISTRY/charts" --plain-http >&2
  say "pushed $(basename "$tgz") to oci://$REGISTRY/charts"
  echo "oci://$REGISTRY/charts/ads-export-operator"
}

command -v buildah >/dev/null || die "'buildah' is required (see .ci/run)"
case "${1:-}" in
  operator) shift; cmd_operator "$@" ;;
  pause) cmd_pause ;;
  chart) cmd_chart ;;
  *) echo "usage: $0 operator [--tag TAG] [--label KEY=VALUE]... | pause | chart" >&2; exit 2 ;;
esac
