#!/usr/bin/env bash
# A throwaway Kubernetes control plane for tests and demos: etcd + kube-apiserver
# (built by hack/build-testbed.sh from pinned upstream modules) on 127.0.0.1.
# No controller-manager or scheduler: objects are stored and validated, nothing
# schedules pods, and deleted namespaces stay Terminating.
#
#   hack/testbed.sh up [--watch-pid PID]   start (no-op if already up); with --watch-pid a
#                                          watchdog runs `down --purge` once PID exits
#   hack/testbed.sh down [--purge]         stop the processes this bed started; --purge also
#                                          deletes the state dir
#   hack/testbed.sh env                    print export lines (eval "$(hack/testbed.sh env)")
#   hack/testbed.sh status                 exit 0 when up and ready
#
# State (etcd data, certs, tokens, logs, pidfiles, kubeconfigs) lives in
# $TESTBED_DIR (default <repo>/target/testbed/run):
#   kubeconfig           admin (system:masters), current context "testbed"
#   kubeconfig-nobody    authenticated user "nobody" with no RBAC rights
#   bin -> <repo>/target/testbed/bin (kubectl, helm, ...)
#   logs/{etcd,kube-apiserver,watchdog}.log
# Environment: TESTBED_READY_TIMEOUT (seconds, default 120), TESTBED_ETCD_TIMEOUT (seconds
# for etcd to answer /health, default 30); TESTBED_TEST_ETCD_EXEC_DELAY (seconds; tests only:
# the first etcd attempt sleeps that long before it execs etcd, so that attempt times out);
# TESTBED_APISERVER_GOMEMLIMIT (kube-apiserver's Go soft memory limit, default 768MiB: tests
# hold a few hundred objects; benches/operator.rs asks for more, as the apiserver's heap
# with 10,000 custom resources nears 768 MiB and it would spend its CPU collecting garbage).
# Process handling (pidfiles, reports of how a daemon died): hack/lib/daemons.sh.
set -euo pipefail

self="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
repo="$(cd "$(dirname "$self")/.." && pwd)"
bin="$repo/target/testbed/bin"
dir="$(realpath -m "${TESTBED_DIR:-$repo/target/testbed/run}")"
pki="$dir/pki"
logs="$dir/logs"
ready_timeout="${TESTBED_READY_TIMEOUT:-120}"
etcd_timeout="${TESTBED_ETCD_TIMEOUT:-30}"
apiserver_gomemlimit="${TESTBED_APISERVER_GOMEMLIMIT:-768MiB}"
sa_issuer="https://kubernetes.default.svc.cluster.local"

say() { printf 'testbed: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- processes

# Daemons (etcd, kube-apiserver, watchdog): hack/lib/daemons.sh tracks them by PID and
# start time in $dir/<name>.pid and says how one died.
# shellcheck source=lib/daemons.sh
source "$repo/hack/lib/daemons.sh"
# shellcheck source=lib/ports.sh
source "$repo/hack/lib/ports.sh"
DAEMONS_PREFIX=testbed
daemons_init "$dir"

# The bed's data is disposable (every `up` starts from scratch), so all
# processes stop at once instead of apiserver first.
stop_all() { daemon_stop watchdog kube-apiserver etcd; }

# ---------------------------------------------------------------- health

apiserver_ready() {
  [[ -f "$dir/ports.env" && -f "$dir/admin.token" ]] || return 1
  # shellcheck disable=SC1091
  source "$dir/ports.env"
  curl -sf --max-time 3 --cacert "$pki/ca.crt" -H "Authorization: Bearer $(cat "$dir/admin.token")" \
    "https://127.0.0.1:$APISERVER_PORT/readyz" >/dev/null 2>&1
}

etcd_healthy() { # <client port>
  curl -sf --max-time 2 "http://127.0.0.1:$1/health" 2>/dev/null | grep -q '"health":"true"'
}

is_up() {
  daemon_alive etcd && daemon_alive kube-apiserver && apiserver_ready
}

# ---------------------------------------------------------------- setup

gen_pki() {
  mkdir -p "$pki"
  local ossl="openssl"
  (
    cd "$pki"
    $ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
      -keyout ca.key -out ca.crt -subj "/CN=ads-export-testbed-ca" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    $ossl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
    cat >apiserver.ext <<'EOF'
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:198.18.0.1
EOF
    $ossl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 \
      -extfile apiserver.ext -out apiserver.crt 2>/dev/null
    # Service-account token signing key pair.
    $ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
    $ossl pkey -in sa.key -pubout -out sa.pub 2>/dev/null
    # The apiserver's client certificate for kubelets (kubectl logs/exec on a
    # hack/cluster.sh node): system:masters, so the kubelet's webhook authorizes it.
    $ossl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout kubelet-client.key \
      -out kubelet-client.csr -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" 2>/dev/null
    printf 'keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' >kubelet-client.ext
    $ossl x509 -req -in kubelet-client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 \
      -extfile kubelet-client.ext -out kubelet-client.crt 2>/dev/null
    chmod 600 ./*.key
  )
}

gen_tokens() {
  local admin nobody
  admin="$(openssl rand -hex 24)"
  nobody="$(openssl rand -hex 24)"
  # token,user,uid,"group1,group2"
  {
    echo "$admin,admin,uid-admin,\"system:masters\""
    echo "$nobody,nobody,uid-nobody"
  } >"$dir/tokens.csv"
  echo "$admin" >"$dir/admin.token"
  echo "$nobody" >"$dir/nobody.token"
  chmod 600 "$dir/tokens.csv" "$dir/admin.token" "$dir/nobody.token"
}

write_kubeconfig() { # <file> <user> <token> <port>
  local ca
  ca="$(base64 -w0 <"$pki/ca.crt")"
  cat >"$1.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: testbed
  cluster:
    server: https://127.0.0.1:$4
    certificate-authority-data: $ca
users:
- name: $2
  user:
    token: $3
contexts:
- name: testbed
  context:
    cluster: testbed
    user: $2
    namespace: default
current-context: testbed
EOF
  chmod 600 "$1.tmp"
  mv -f "$1.tmp" "$1"
}

start_etcd() { # <client port> <peer port> <attempt>; returns 1 (having said why) if etcd exits or never gets healthy
  local delay=()
  rm -rf "$dir/etcd"
  if [[ -n "${TESTBED_TEST_ETCD_EXEC_DELAY:-}" && "$3" == 1 ]]; then
    # shellcheck disable=SC2016 # for the inner shell
    delay=(bash -c 'sleep "$0" && exec "$@"' "$TESTBED_TEST_ETCD_EXEC_DELAY")
  fi
  GOMEMLIMIT=256MiB daemon_start etcd "$logs/etcd.log" "${delay[@]}" "$bin/etcd" \
    --name testbed --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$1" --advertise-client-urls "http://127.0.0.1:$1" \
    --listen-peer-urls "http://127.0.0.1:$2" --initial-advertise-peer-urls "http://127.0.0.1:$2" \
    --initial-cluster "testbed=http://127.0.0.1:$2" --initial-cluster-state new \
    --unsafe-no-fsync --quota-backend-bytes 2147483648 \
    --auto-compaction-mode periodic --auto-compaction-retention 10m \
    --snapshot-count 5000 --log-level warn || return 1
  daemon_wait_until "$etcd_timeout" "etcd to answer /health on 127.0.0.1:$1" etcd_healthy "$1"
}

start_apiserver() { # <etcd port> <secure port>; returns 1 (having said why) if not ready
  printf 'ETCD_PORT=%s\nAPISERVER_PORT=%s\n' "$1" "$2" >"$dir/ports.env"
  # Service IPs from 198.18.0.0/24 (RFC 2544 benchmarking, not a private range; the
  # kubernetes Service's 198.18.0.1 is in the certificate, see gen_pki). No pod network.
  GOMEMLIMIT="$apiserver_gomemlimit" daemon_start kube-apiserver "$logs/kube-apiserver.log" "$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$1" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$2" \
    --cert-dir "$pki" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --kubelet-client-certificate "$pki/kubelet-client.crt" --kubelet-client-key "$pki/kubelet-client.key" \
    --token-auth-file "$dir/tokens.csv" \
    --authorization-mode RBAC \
    --service-account-issuer "$sa_issuer" --api-audiences "$sa_issuer" \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-cluster-ip-range 198.18.0.0/24 \
    --endpoint-reconciler-type none \
    --enable-priority-and-fairness=false \
    --profiling=false \
    --delete-collection-workers 1 \
    --event-ttl 30m || return 1
  # Watches etcd too: an etcd that dies now is reported as such, not as a slow apiserver.
  daemon_wait_until "$ready_timeout" "kube-apiserver to be ready" apiserver_ready
}

print_log_tail() {
  say "---- tail of $logs/$1.log ----"
  tail -n "${2:-40}" "$logs/$1.log" >&2 || true
  say "----"
}

# ---------------------------------------------------------------- commands

cmd_up() {
  local watch="" watch_start start=$SECONDS attempt etcd_port peer_port api_port ok bed_id
  while (($#)); do
    case "$1" in
      --watch-pid) watch="${2:?--watch-pid needs a PID}"; shift 2 ;;
      *) die "up: unknown argument $1" ;;
    esac
  done
  mkdir -p "$dir"
  exec 9>"$dir/.lock"
  flock 9

  if is_up; then
    say "already up in $dir ($(grep APISERVER_PORT "$dir/ports.env"))"
    return 0
  fi
  stop_all # leftovers of a half-dead bed

  "$repo/hack/build-testbed.sh"
  for t in openssl curl python3 setsid flock base64; do
    command -v "$t" >/dev/null || die "'$t' is required (see .ci/run)"
  done

  # Fresh state every time: the bed is disposable.
  find "$dir" -mindepth 1 -maxdepth 1 ! -name .lock -exec rm -rf {} +
  mkdir -p "$logs"
  ln -sfn "$bin" "$dir/bin"
  gen_pki
  gen_tokens
  # This bed's identity: a watchdog tears down only the bed it was started for, never
  # a later one in the same $dir (its `down` may wait for our lock while we start anew).
  bed_id="$(openssl rand -hex 8)"
  echo "$bed_id" >"$dir/bed.id"
  if [[ -n "$watch" ]]; then
    # Started before the daemons so that nothing leaks even if the watched
    # process dies during startup (the watchdog's `down` waits for our lock).
    # PID + start time: a reused PID does not keep the bed up.
    watch_start="$(_daemon_stat "$watch")" || die "--watch-pid $watch is not running"
    daemon_start watchdog "$logs/watchdog.log" bash "$self" __watchdog "$watch" "${watch_start#* }" "$dir/" "$bed_id" ||
      die "could not start the watchdog"
  fi

  ok=0
  for attempt in 1 2 3; do # ports are only reserved until we close them: retry on a race
    read -r etcd_port peer_port api_port <<<"$(free_ports 3)"
    if ! start_etcd "$etcd_port" "$peer_port" "$attempt"; then
      say "etcd failed to start (attempt $attempt)"
      if daemon_alive etcd; then print_log_tail etcd 20; fi
      daemon_stop etcd
      continue
    fi
    if start_apiserver "$etcd_port" "$api_port"; then
      ok=1
      break
    fi
    if daemon_alive kube-apiserver; then print_log_tail kube-apiserver 40; fi
    daemon_stop kube-apiserver etcd
    # Only a lost port race is worth another try.
    grep -q "address already in use" "$logs/kube-apiserver.log" 2>/dev/null || break
  done
  if ((ok == 0)); then
    stop_all
    die "could not start the test bed; logs in $logs"
  fi

  write_kubeconfig "$dir/kubeconfig-nobody" nobody "$(cat "$dir/nobody.token")" "$api_port"
  write_kubeconfig "$dir/kubeconfig-admin" admin "$(cat "$dir/admin.token")" "$api_port"
  cp -f "$dir/kubeconfig-admin" "$dir/kubeconfig.tmp" && mv -f "$dir/kubeconfig.tmp" "$dir/kubeconfig"

  say "up in $((SECONDS - start))s: https://127.0.0.1:$api_port (etcd 127.0.0.1:$etcd_port) state $dir"
  if [[ -n "${TESTBED_DIR:-}" ]]; then
    say "use it with: eval \"\$(TESTBED_DIR=$(printf %q "$dir") $self env)\""
  else
    say "use it with: eval \"\$($self env)\""
  fi
}

cmd_down() {
  local purge=0 bed=""
  while (($#)); do
    case "$1" in
      --purge) purge=1; shift ;;
      --bed) bed="${2:?--bed needs an ID}"; shift 2 ;; # internal: only if the bed is still this one
      *) die "down: unknown argument $1" ;;
    esac
  done
  if [[ -f "$dir/.lock" ]]; then
    exec 9>"$dir/.lock"
    flock 9
  fi
  if [[ -n "$bed" && "$(cat "$dir/bed.id" 2>/dev/null)" != "$bed" ]]; then
    say "bed $bed in $dir was already replaced or removed; leaving $dir alone"
    return 0
  fi
  stop_all
  if ((purge)); then
    rm -rf "$dir"
    say "down; removed $dir"
  else
    say "down; state kept in $dir"
  fi
}

cmd_env() {
  [[ -f "$dir/kubeconfig" ]] || say "warning: no bed in $dir (run: $self up)"
  printf 'export KUBECONFIG=%q\n' "$dir/kubeconfig"
  printf 'export ADS_TESTBED_DIR=%q\n' "$dir"
  printf 'export PATH=%q:"$PATH"\n' "$bin"
}

rss_mib() { awk '/^VmRSS/ { printf "%d", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "?"; }

cmd_status() {
  local name pid rc=0
  for name in etcd kube-apiserver watchdog; do
    if pid="$(daemon_pid "$name")"; then
      echo "$name: running (pid $pid, rss $(rss_mib "$pid") MiB)"
    else
      echo "$name: not running"
      [[ "$name" == watchdog ]] || rc=1
    fi
  done
  if apiserver_ready; then
    echo "kube-apiserver: ready at https://127.0.0.1:$APISERVER_PORT"
  else
    echo "kube-apiserver: not ready"
    rc=1
  fi
  echo "state: $dir"
  return $rc
}

cmd_watchdog() { # <pid> <start time> <dir> <bed id>: internal, started by `up --watch-pid`
  local pid="$1"
  while _daemon_same "$pid" "$2"; do sleep 1; done
  say "watched pid $pid exited; tearing down bed $4 in $3"
  rm -f "${3%/}/watchdog.pid"
  TESTBED_DIR="$3" exec "$self" down --purge --bed "$4"
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  env) cmd_env ;;
  status) cmd_status ;;
  __watchdog) shift; cmd_watchdog "$@" ;;
  *) echo "usage: $0 up [--watch-pid PID] | down [--purge] | env | status" >&2; exit 2 ;;
esac
