#!/usr/bin/env bash
# A real two-node Kubernetes cluster for the cluster tests and the README's "Try it on
# a local cluster", built on hack/testbed.sh's etcd + kube-apiserver. Everything runs
# inside network and mount namespaces this script creates (unshare), so no component
# can reach another address than its own: the namespace holds only `lo`, with
# 127.0.0.1 and the nodes' TEST-NET-1 addresses (192.0.2.1, 192.0.2.2, RFC 5737).
#
#   hack/cluster.sh up [--watch-pid PID]  start (no-op if already up): namespaces, etcd +
#                                         kube-apiserver, kube-controller-manager,
#                                         kube-scheduler, a CNCF Distribution registry, and
#                                         per node a containerd and a kubelet; waits for
#                                         both nodes Ready. With --watch-pid a watchdog
#                                         runs `down --purge` once PID exits.
#   hack/cluster.sh down [--purge]        stop everything by PID, remove the cgroups the
#                                         kubelets made; --purge also deletes the state dir
#   hack/cluster.sh exec CMD...           run CMD inside the cluster's namespaces (where
#                                         127.0.0.1 is the cluster's loopback)
#   hack/cluster.sh try                   the README's "Try it on a local cluster": `up`,
#                                         the release binaries, image and chart pushed to
#                                         the registry, an ADS emulator on 127.0.0.1:4566,
#                                         `helm install oci://...`, examples/basic.yaml
#                                         applied, then `kubectl get pods,cex -A`
#   hack/cluster.sh env                   print export lines (eval "$(hack/cluster.sh env)")
#   hack/cluster.sh status                exit 0 when up and both nodes are Ready
#
# Two nodes because the operator's two replicas use hostNetwork: true (the project's
# network rule) and so cannot share one node's metrics port.
#
# State lives in $CLUSTER_DIR (default <repo>/target/testbed/cluster):
#   control/                 TESTBED_DIR of hack/testbed.sh (etcd, apiserver, pki, kubeconfig)
#   kubeconfig               admin kubeconfig (a copy of control/kubeconfig)
#   cluster.env              REGISTRY=127.0.0.1:<port>, APISERVER_PORT, NS_PID
#   registry/                the registry's storage; certs.d/ containerd's view of it
#   node-N/                  containerd root/state/socket, kubelet root (/var/lib/kubelet
#                            inside the node's mount namespace), /var/log, CNI config
#   logs/*.log, daemons/     logs and the daemons' records (hack/lib/daemons.sh)
# Host writes: none outside the state dir except the cgroups under
# /sys/fs/cgroup/<controller>/<cgroup root> (removed by `down`). The sysctls the
# kubelet would set (vm.overcommit_memory, kernel.panic, kernel.panic_on_oops) are
# shown to it with the values it wants through bind mounts in the mount namespace,
# so it never writes them.
# Environment: CLUSTER_READY_TIMEOUT (seconds, default 180).
set -euo pipefail

self="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
repo="$(cd "$(dirname "$self")/.." && pwd)"
bin="$repo/target/testbed/bin"
dir="$(realpath -m "${CLUSTER_DIR:-$repo/target/testbed/cluster}")"
ctl="$dir/control"
logs="$dir/logs"
ready_timeout="${CLUSTER_READY_TIMEOUT:-180}"
nodes=(1 2)
# shellcheck source=versions.env
source "$repo/hack/versions.env"
# shellcheck source=lib/daemons.sh
source "$repo/hack/lib/daemons.sh"
# shellcheck source=lib/ports.sh
source "$repo/hack/lib/ports.sh"
# shellcheck source=lib/cluster-config.sh
source "$repo/hack/lib/cluster-config.sh"

say() { printf 'cluster: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

node_ip() { echo "192.0.2.$1"; }
node_name() { echo "node-$1"; }
# One cgroup subtree per bed, named after its state dir, so beds never share one.
cgroup_root() { echo "/adsbed-$(sha256sum <<<"$dir" | cut -c1-10)"; }

ns_pid() { cat "$dir/ns.pid" 2>/dev/null; }
node_ns_pid() { cat "$dir/node-$1/ns.pid" 2>/dev/null; }
# Runs a command inside the cluster's network + mount namespaces.
in_ns() { nsenter -t "$(ns_pid)" -n -m -- "$@"; }
# Runs a command inside node N's mount namespace (a child of the cluster's).
in_node() { local n="$1"; shift; nsenter -t "$(node_ns_pid "$n")" -n -m -- "$@"; }

kubectl_admin() { in_ns "$bin/kubectl" --kubeconfig "$dir/kubeconfig" "$@"; }

# ---------------------------------------------------------------- namespaces

# Internal (`__ns`): runs as the namespace holder, inside fresh network and mount
# namespaces. Brings up lo with the node addresses, hides the host's DNS (hosts and
# resolv.conf of our own) and the kernel sysctls the kubelet would write, then
# sleeps so that the namespaces live until `down`.
cmd_ns() {
  local n
  ip link set lo up
  for n in "${nodes[@]}"; do ip addr add "$(node_ip "$n")/32" dev lo; done
  mount --bind "$dir/etc/hosts" /etc/hosts
  mount --bind "$dir/etc/resolv.conf" /etc/resolv.conf
  bind_kubelet_sysctls "$dir/etc/sysctl"
  echo "$$" >"$dir/ns.pid" # unshare and `exec` keep the PID: this is the holder's
  exec sleep infinity
}

# Internal (`__node_ns N`): node N's mount namespace, nested in the cluster's: the
# paths the kubelet and containerd hard-code (/var/lib/kubelet, /var/log/pods,
# /var/log/containers, /run/containerd) are this node's own directories.
cmd_node_ns() {
  local node="$dir/node-$1"
  mount -t tmpfs -o mode=0755 tmpfs /run
  mount -t tmpfs -o mode=0755 tmpfs /var/lib
  mkdir -p /var/lib/kubelet
  mount --bind "$node/kubelet" /var/lib/kubelet
  mount --bind "$node/log" /var/log
  echo "$$" >"$node/ns.pid"
  exec sleep infinity
}

# ---------------------------------------------------------------- cgroups

cgroup_controllers() { # the v1 hierarchies the kubelet's cgroupfs driver uses
  local c
  for c in /sys/fs/cgroup/*/; do
    c="$(basename "$c")"
    [[ "$c" == unified ]] && continue
    [[ -L "/sys/fs/cgroup/$c" ]] && continue # cpu -> cpu,cpuacct
    echo "$c"
  done
}

make_cgroups() {
  local c n root
  root="$(cgroup_root)"
  for c in $(cgroup_controllers); do
    for n in "${nodes[@]}"; do mkdir -p "/sys/fs/cgroup/$c$root/$(node_name "$n")"; done
  done
}

# Removes the bed's cgroup subtree, deepest first; a cgroup still holding a
# process cannot be removed and is reported.
remove_cgroups() {
  local c root d left=0
  root="$(cgroup_root)"
  for c in $(cgroup_controllers); do
    [[ -d "/sys/fs/cgroup/$c$root" ]] || continue
    while IFS= read -r d; do
      rmdir "$d" 2>/dev/null || { say "cgroup $d still in use"; left=1; }
    done < <(find "/sys/fs/cgroup/$c$root" -depth -type d)
  done
  return $left
}

# ---------------------------------------------------------------- health

node_ready() { # <name>
  local s
  s="$(kubectl_admin get node "$1" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" || return 1
  [[ "$s" == True ]]
}

all_nodes_ready() {
  local n
  for n in "${nodes[@]}"; do node_ready "$(node_name "$n")" || return 1; done
}

registry_ready() {
  in_ns curl -sf --max-time 2 "http://$REGISTRY/v2/" >/dev/null 2>&1
}

daemon_names() {
  local n
  echo ns kube-controller-manager kube-scheduler registry
  for n in "${nodes[@]}"; do echo "node-$n-ns containerd-$n kubelet-$n"; done
}

is_up() {
  [[ -f "$dir/cluster.env" ]] || return 1
  # shellcheck disable=SC1091
  source "$dir/cluster.env"
  local name
  for name in $(daemon_names); do daemon_alive "$name" || return 1; done
  all_nodes_ready
}

# ---------------------------------------------------------------- start

start_ns() {
  mkdir -p "$dir/etc"
  write_hosts_file "$dir/etc/hosts"
  echo "# the cluster bed has no DNS server" >"$dir/etc/resolv.conf"
  rm -f "$dir/ns.pid"
  daemon_start ns "$logs/ns.log" unshare --net --mount --propagation private -- bash "$self" __ns
  daemon_wait_until 10 "the cluster's namespaces" test -s "$dir/ns.pid"
}

start_control_plane() { # sets api_port
  in_ns env TESTBED_DIR="$ctl" "$repo/hack/testbed.sh" up
  cp -f "$ctl/kubeconfig" "$dir/kubeconfig"
  api_port="$(sed -n 's/^APISERVER_PORT=//p' "$ctl/ports.env")"
  # Secure ports 0: neither serves anything; their health is the cluster's (nodes Ready, pods scheduled).
  daemon_start kube-controller-manager "$logs/kube-controller-manager.log" \
    nsenter -t "$(ns_pid)" -n -m -- env GOMEMLIMIT=256MiB "$bin/kube-controller-manager" \
    --kubeconfig "$dir/kubeconfig" --secure-port 0 --leader-elect=false \
    --service-account-private-key-file "$ctl/pki/sa.key" --root-ca-file "$ctl/pki/ca.crt" \
    --use-service-account-credentials=false --controllers '*' \
    --concurrent-gc-syncs 2 --namespace-sync-period 1m
  daemon_start kube-scheduler "$logs/kube-scheduler.log" \
    nsenter -t "$(ns_pid)" -n -m -- env GOMEMLIMIT=128MiB "$bin/kube-scheduler" \
    --kubeconfig "$dir/kubeconfig" --secure-port 0 --leader-elect=false
}

start_registry() { # <port>
  mkdir -p "$dir/registry/storage"
  write_registry_config "$dir/registry/config.yml" "$1" "$dir/registry/storage"
  write_registry_hosts "$dir/registry/certs.d" "127.0.0.1:$1"
  daemon_start registry "$logs/registry.log" \
    nsenter -t "$(ns_pid)" -n -m -- env GOMEMLIMIT=128MiB "$bin/registry" serve "$dir/registry/config.yml"
  daemon_wait_until 30 "the registry on 127.0.0.1:$1" registry_ready
}

start_node() { # <n> <kubelet port>
  local n="$1" node="$dir/node-$1" name
  name="$(node_name "$n")"
  mkdir -p "$node"/{containerd,kubelet,log,cni,volume-plugins}
  write_containerd_config "$node/containerd/config.toml" "$node" "$REGISTRY/pause:$PAUSE_VERSION" \
    "$dir/registry/certs.d"
  write_cni_config "$node/cni"
  write_kubelet_config "$node/kubelet-config.yaml" "$node" "$(node_ip "$n")" "$2" \
    "$(cgroup_root)/$name" "$ctl/pki/ca.crt" "$dir/etc/resolv.conf"
  rm -f "$node/ns.pid"
  daemon_start "node-$n-ns" "$logs/node-$n-ns.log" \
    nsenter -t "$(ns_pid)" -n -m -- unshare --mount --propagation private -- bash "$self" __node_ns "$n"
  daemon_wait_until 10 "node $n's mount namespace" test -s "$node/ns.pid"
  daemon_start "containerd-$n" "$logs/containerd-$n.log" \
    nsenter -t "$(node_ns_pid "$n")" -n -m -- containerd --config "$node/containerd/config.toml"
  daemon_wait_until 30 "containerd $n" test -S "$node/containerd.sock"
  daemon_start "kubelet-$n" "$logs/kubelet-$n.log" \
    nsenter -t "$(node_ns_pid "$n")" -n -m -- env GOMEMLIMIT=256MiB "$bin/kubelet" \
    --config "$node/kubelet-config.yaml" --kubeconfig "$dir/kubeconfig" \
    --hostname-override "$name" --node-ip "$(node_ip "$n")" --v 1
}

cmd_up() {
  local watch="" start=$SECONDS api_port reg_port n ports
  while (($#)); do
    case "$1" in
      --watch-pid) watch="${2:?--watch-pid needs a PID}"; shift 2 ;;
      *) die "up: unknown argument $1" ;;
    esac
  done
  for t in unshare nsenter ip containerd runc buildah curl python3 sha256sum; do
    command -v "$t" >/dev/null || die "'$t' is required (see .ci/run)"
  done
  [[ -x /usr/lib/cni/loopback ]] || die "the CNI loopback plugin (/usr/lib/cni/loopback) is required (see .ci/run)"
  mkdir -p "$dir"
  exec 9>"$dir/.lock"
  flock 9
  daemons_init "$dir/daemons"
  if is_up; then
    say "already up in $dir (registry $REGISTRY)"
    return 0
  fi
  stop_all # leftovers of a half-dead bed

  "$repo/hack/build-testbed.sh"
  # A failed `up` leaves nothing running (the logs stay).
  trap '(($? == 0)) || { say "up failed: stopping what started; logs in $logs"; stop_all; }' EXIT
  find "$dir" -mindepth 1 -maxdepth 1 ! -name .lock ! -name daemons -exec rm -rf {} +
  mkdir -p "$logs"
  if [[ -n "$watch" ]]; then
    kill -0 "$watch" 2>/dev/null || die "--watch-pid $watch is not running"
    daemon_start watchdog "$logs/watchdog.log" bash "$self" __watchdog "$watch" "$dir"
  fi
  start_ns
  start_control_plane
  read -r reg_port <<<"$(free_ports 1 in_ns)"
  REGISTRY="127.0.0.1:$reg_port"
  printf 'REGISTRY=%s\nAPISERVER_PORT=%s\nNETNS=%s\n' "$REGISTRY" "$api_port" \
    "$(readlink "/proc/$(ns_pid)/ns/net")" >"$dir/cluster.env"
  start_registry "$reg_port"
  # The sandbox image comes from the bed's registry like any other image.
  in_ns env REGISTRY="$REGISTRY" IMAGE_STATE_DIR="$dir/buildah" "$repo/hack/image.sh" pause
  make_cgroups
  read -r -a ports <<<"$(free_ports "${#nodes[@]}" in_ns)"
  for n in "${nodes[@]}"; do start_node "$n" "${ports[$((n - 1))]}"; done
  daemon_wait_until "$ready_timeout" "nodes $(printf 'node-%s ' "${nodes[@]}")Ready" all_nodes_ready
  trap - EXIT
  say "up in $((SECONDS - start))s: apiserver https://127.0.0.1:$api_port, registry $REGISTRY, nodes Ready; state $dir"
  say "use it with: eval \"\$(CLUSTER_DIR=$(printf %q "$dir") $self env)\" and $self exec CMD..."
}

# ---------------------------------------------------------------- stop

stop_all() {
  local n
  # Kubelets first, so that none restarts a container while containerd stops.
  daemon_stop "${nodes[@]/#/kubelet-}" kube-controller-manager kube-scheduler
  daemon_stop "${nodes[@]/#/containerd-}" registry emulator
  if [[ -f "$ctl/ports.env" ]] && [[ -n "$(ns_pid)" ]] && kill -0 "$(ns_pid)" 2>/dev/null; then
    in_ns env TESTBED_DIR="$ctl" "$repo/hack/testbed.sh" down >/dev/null 2>&1 || true
  fi
  kill_namespace_leftovers
  # Ending the holders ends the namespaces and with them every mount the kubelets
  # and containerd made (volumes, rootfs overlays, tmpfs).
  for n in "${nodes[@]}"; do daemon_stop "node-$n-ns"; done
  daemon_stop ns watchdog # (daemon_stop never signals this shell: the watchdog runs `down`)
  remove_cgroups || true
}

# Prints the PIDs of the processes in the bed's network namespace other than the
# holders and this shell: containerd's shims and the containers they run (all pods
# use hostNetwork), which outlive containerd by design.
namespace_leftovers() {
  local netns p holders
  netns="$(sed -n 's/^NETNS=//p' "$dir/cluster.env" 2>/dev/null)"
  [[ -n "$netns" ]] || return 0
  holders=" $(ns_pid) $(for n in "${nodes[@]}"; do node_ns_pid "$n"; done | tr '\n' ' ') $$ "
  for p in /proc/[0-9]*; do
    p="${p#/proc/}"
    [[ "$(readlink "/proc/$p/ns/net" 2>/dev/null)" == "$netns" ]] || continue
    [[ "$holders" == *" $p "* ]] || echo "$p"
  done
}

kill_namespace_leftovers() {
  local pids deadline=$((SECONDS + 10))
  pids="$(namespace_leftovers)"
  [[ -n "$pids" ]] || return 0
  say "killing what is left in the namespace: $(echo $pids)"
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
  while [[ -n "$(namespace_leftovers)" ]] && ((SECONDS < deadline)); do sleep 0.1; done
}

cmd_down() {
  local purge=0
  [[ "${1:-}" == "--purge" ]] && purge=1
  [[ -d "$dir" ]] || { say "no cluster in $dir"; return 0; }
  exec 9>"$dir/.lock"
  flock 9
  daemons_init "$dir/daemons"
  stop_all
  if ((purge)); then
    rm -rf "$dir"
    say "down; removed $dir"
  else
    say "down; state kept in $dir"
  fi
}

cmd_exec() {
  [[ -n "$(ns_pid)" ]] && kill -0 "$(ns_pid)" 2>/dev/null || die "no cluster up in $dir (run: $self up)"
  (($#)) || die "exec: no command"
  eval "$(cmd_env)"
  exec nsenter -t "$(ns_pid)" -n -m --wd="$PWD" -- "$@" # (a mount namespace starts in /)
}

cmd_env() {
  [[ -f "$dir/cluster.env" ]] || say "warning: no cluster in $dir (run: $self up)"
  printf 'export KUBECONFIG=%q\n' "$dir/kubeconfig"
  printf 'export ADS_CLUSTER_DIR=%q\n' "$dir"
  printf 'export ADS_TESTBED_DIR=%q\n' "$ctl"
  printf 'export PATH=%q:"$PATH"\n' "$bin"
  [[ -f "$dir/cluster.env" ]] && sed 's/^/export CLUSTER_/' "$dir/cluster.env"
  return 0
}

cmd_status() {
  daemons_init "$dir/daemons"
  local name rc=0
  for name in $(daemon_names); do
    if daemon_alive "$name"; then echo "$name: running"; else echo "$name: not running"; rc=1; fi
  done
  if ((rc == 0)); then
    kubectl_admin get nodes -o wide || rc=1
    all_nodes_ready || rc=1
  fi
  echo "state: $dir"
  return $rc
}

cmd_try() {
  local chart image ns=ads-export-operator emu_port=4566
  cmd_up
  (cd "$repo" && cargo build --release --locked --bin ads-export-operator --bin ads-emulator)
  # shellcheck disable=SC1091
  source "$dir/cluster.env"
  eval "$(cmd_env)"
  image="$(in_ns env REGISTRY="$REGISTRY" IMAGE_STATE_DIR="$dir/buildah" "$repo/hack/image.sh" operator)"
  chart="$(in_ns env REGISTRY="$REGISTRY" IMAGE_STATE_DIR="$dir/buildah" "$repo/hack/image.sh" chart)"
  daemon_alive emulator || daemon_start emulator "$logs/emulator.log" \
    nsenter -t "$(ns_pid)" -n -m -- "$repo/target/release/ads-emulator" \
    --listen "127.0.0.1:$emu_port" --home-region us-west-2
  in_ns "$bin/helm" upgrade --install ads-export-operator "$chart" --plain-http \
    --namespace "$ns" --create-namespace \
    --set image.repository="${image%:*}" --set image.tag="${image##*:}" --set hostNetwork=true \
    --set awsRegion=us-west-2 --set awsEndpointUrl="http://127.0.0.1:$emu_port" \
    --set-string 'extraEnv[0].name=KUBERNETES_SERVICE_HOST,extraEnv[0].value=127.0.0.1' \
    --set-string "extraEnv[1].name=KUBERNETES_SERVICE_PORT,extraEnv[1].value=$APISERVER_PORT" \
    --set-string 'extraEnv[2].name=AWS_ACCESS_KEY_ID,extraEnv[2].value=dummy' \
    --set-string 'extraEnv[3].name=AWS_SECRET_ACCESS_KEY,extraEnv[3].value=dummy' \
    --wait --timeout 5m
  kubectl_admin apply -n default -f "$repo/examples/basic.yaml"
  kubectl_admin wait -n default --for=condition=Ready cex/inventory-export --timeout 120s
  kubectl_admin get pods,cex -A -o wide
  say "stop it with: $self down"
}

cmd_watchdog() { # <pid> <dir>: internal, started by `up --watch-pid`
  while kill -0 "$1" 2>/dev/null; do sleep 1; done
  say "watched pid $1 exited; tearing down $2"
  CLUSTER_DIR="$2" exec "$self" down --purge
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  exec) shift; cmd_exec "$@" ;;
  env) cmd_env ;;
  status) cmd_status ;;
  try) cmd_try ;;
  __ns) cmd_ns ;;
  __node_ns) cmd_node_ns "$2" ;;
  __watchdog) shift; cmd_watchdog "$@" ;;
  *) echo "usage: $0 up [--watch-pid PID] | down [--purge] | exec CMD... | try | env | status" >&2; exit 2 ;;
esac
