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
# Environment: TESTBED_READY_TIMEOUT (seconds, default 120).
set -euo pipefail

self="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
repo="$(cd "$(dirname "$self")/.." && pwd)"
bin="$repo/target/testbed/bin"
dir="$(realpath -m "${TESTBED_DIR:-$repo/target/testbed/run}")"
pki="$dir/pki"
logs="$dir/logs"
ready_timeout="${TESTBED_READY_TIMEOUT:-120}"
sa_issuer="https://kubernetes.default.svc.cluster.local"

say() { printf 'testbed: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- processes

# Prints the PID recorded in $dir/<name>.pid if that process is alive and is
# really ours (its command line mentions a path under this state dir), guarding
# against PID reuse.
live_pid() {
  local f="$dir/$1.pid" pid
  [[ -f "$f" ]] || return 1
  pid="$(cat "$f")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$dir/" || return 1
  echo "$pid"
}

# Stops the named processes (SIGTERM to all, then wait; SIGKILL after 20s) and
# removes their pidfiles. Never signals this shell itself (the watchdog runs `down`).
stop() { # <name>...
  local name pid i deadline pids=() names=()
  for name in "$@"; do
    if pid="$(live_pid "$name")" && [[ "$pid" != "$$" ]]; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
      names+=("$name")
    fi
  done
  for ((i = 0; i < ${#pids[@]}; i++)); do
    pid="${pids[$i]}"
    deadline=$((SECONDS + 20))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      say "${names[$i]} (pid $pid) ignored SIGTERM; killing"
      kill -KILL "$pid" 2>/dev/null || true
      while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
    say "stopped ${names[$i]} (pid $pid)"
  done
  for name in "$@"; do rm -f "$dir/$name.pid"; done
}

# The bed's data is disposable (every `up` starts from scratch), so all
# processes stop at once instead of apiserver first.
stop_all() { stop watchdog kube-apiserver etcd; }

# Starts a command in its own session (so a Ctrl-C aimed at the caller does not
# kill it half-way), stdio detached, and records its PID.
spawn() { # <name> <cmd...>
  local name="$1"; shift
  # 9>&-: the daemons must not inherit the lock fd, or they would hold the lock forever.
  setsid "$@" </dev/null >>"$logs/$name.log" 2>&1 9>&- &
  local pid=$! i
  echo "$pid" >"$dir/$name.pid"
  # Until the fork has exec'd, /proc/<pid>/cmdline is still this shell's, and
  # live_pid would call a healthy daemon dead (seen on a slow CI machine: three
  # "failed" etcd starts with empty logs). Wait for the exec, or for the exit.
  for ((i = 0; i < 100; i++)); do # 10s
    kill -0 "$pid" 2>/dev/null || return 0
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$dir/" && return 0
    sleep 0.1
  done
  say "$name (pid $pid) did not exec within 10s"
}

free_ports() { # <n>: n distinct free loopback ports
  python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# ---------------------------------------------------------------- health

apiserver_ready() {
  [[ -f "$dir/ports.env" && -f "$dir/admin.token" ]] || return 1
  # shellcheck disable=SC1091
  source "$dir/ports.env"
  curl -sf --max-time 3 --cacert "$pki/ca.crt" -H "Authorization: Bearer $(cat "$dir/admin.token")" \
    "https://127.0.0.1:$APISERVER_PORT/readyz" >/dev/null 2>&1
}

is_up() {
  live_pid etcd >/dev/null && live_pid kube-apiserver >/dev/null && apiserver_ready
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
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:10.96.0.1
EOF
    $ossl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 \
      -extfile apiserver.ext -out apiserver.crt 2>/dev/null
    # Service-account token signing key pair.
    $ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
    $ossl pkey -in sa.key -pubout -out sa.pub 2>/dev/null
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

start_etcd() { # <client port> <peer port>; returns 1 if etcd exits or never gets healthy
  local i
  rm -rf "$dir/etcd"
  spawn etcd env GOMEMLIMIT=256MiB "$bin/etcd" \
    --name testbed --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$1" --advertise-client-urls "http://127.0.0.1:$1" \
    --listen-peer-urls "http://127.0.0.1:$2" --initial-advertise-peer-urls "http://127.0.0.1:$2" \
    --initial-cluster "testbed=http://127.0.0.1:$2" --initial-cluster-state new \
    --unsafe-no-fsync --quota-backend-bytes 2147483648 \
    --auto-compaction-mode periodic --auto-compaction-retention 10m \
    --snapshot-count 5000 --log-level warn
  for ((i = 0; i < 300; i++)); do # 30s
    live_pid etcd >/dev/null || return 1
    curl -sf --max-time 2 "http://127.0.0.1:$1/health" 2>/dev/null | grep -q '"health":"true"' && return 0
    sleep 0.1
  done
  return 1
}

start_apiserver() { # <etcd port> <secure port>; returns 1 (after printing the log tail) if not ready
  local deadline=$((SECONDS + ready_timeout))
  printf 'ETCD_PORT=%s\nAPISERVER_PORT=%s\n' "$1" "$2" >"$dir/ports.env"
  spawn kube-apiserver env GOMEMLIMIT=768MiB "$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$1" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$2" \
    --cert-dir "$pki" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --token-auth-file "$dir/tokens.csv" \
    --authorization-mode RBAC \
    --service-account-issuer "$sa_issuer" --api-audiences "$sa_issuer" \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-cluster-ip-range 10.96.0.0/24 \
    --endpoint-reconciler-type none \
    --enable-priority-and-fairness=false \
    --profiling=false \
    --delete-collection-workers 1 \
    --event-ttl 30m
  until apiserver_ready; do
    if ! live_pid kube-apiserver >/dev/null; then
      say "kube-apiserver exited during startup"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      say "kube-apiserver not ready after ${ready_timeout}s"
      return 1
    fi
    sleep 0.2
  done
}

print_log_tail() {
  say "---- tail of $logs/$1.log ----"
  tail -n "${2:-40}" "$logs/$1.log" >&2 || true
  say "----"
}

# ---------------------------------------------------------------- commands

cmd_up() {
  local watch="" start=$SECONDS attempt etcd_port peer_port api_port ok
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
  if [[ -n "$watch" ]]; then
    # Started before the daemons so that nothing leaks even if the watched
    # process dies during startup (the watchdog's `down` waits for our lock).
    kill -0 "$watch" 2>/dev/null || die "--watch-pid $watch is not running"
    spawn watchdog bash "$self" __watchdog "$watch" "$dir/"
  fi

  ok=0
  for attempt in 1 2 3; do # ports are only reserved until we close them: retry on a race
    read -r etcd_port peer_port api_port <<<"$(free_ports 3)"
    if ! start_etcd "$etcd_port" "$peer_port"; then
      say "etcd failed to start (attempt $attempt)"
      print_log_tail etcd 20
      stop etcd
      continue
    fi
    if start_apiserver "$etcd_port" "$api_port"; then
      ok=1
      break
    fi
    print_log_tail kube-apiserver 40
    stop kube-apiserver
    stop etcd
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
  local purge=0
  [[ "${1:-}" == "--purge" ]] && purge=1
  if [[ -f "$dir/.lock" ]]; then
    exec 9>"$dir/.lock"
    flock 9
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
    if pid="$(live_pid "$name")"; then
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

cmd_watchdog() { # <pid> <dir>: internal, started by `up --watch-pid`
  local pid="$1"
  while kill -0 "$pid" 2>/dev/null; do sleep 1; done
  say "watched pid $pid exited; tearing down $2"
  rm -f "${2%/}/watchdog.pid"
  TESTBED_DIR="$2" exec "$self" down --purge
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  env) cmd_env ;;
  status) cmd_status ;;
  __watchdog) shift; cmd_watchdog "$@" ;;
  *) echo "usage: $0 up [--watch-pid PID] | down [--purge] | env | status" >&2; exit 2 ;;
esac
