#!/usr/bin/env bash
# The demo, one command: a throwaway control plane (hack/testbed.sh), the ADS emulator
# and the operator on loopback; then examples/basic.yaml is started, stopped
# (examples/stopped.yaml) and deleted, printing each status transition.
#
#   hack/demo.sh          run the demo; everything it started is stopped when it ends,
#                         fails or is interrupted (Ctrl-C)
#   hack/demo.sh --keep   run the demo, then leave bed, emulator and operator running
#   hack/demo.sh --down   stop what --keep left running
#
# State and logs: target/testbed/demo (the bed's TESTBED_DIR; DEMO_DIR overrides it, and
# the lock is <that dir>.lock, so demos with different dirs do not exclude each other):
#   kubeconfig, logs/{ads-export-operator,ads-emulator,kube-apiserver,etcd}.log,
#   emulator.url, metrics.url, {ads-export-operator,ads-emulator}.pid
# Every run starts from a fresh bed, so leftovers of an earlier run do not matter.
# A daemon that dies is reported at once (exit status or signal, tail of its log), by
# hack/lib/daemons.sh, whichever step the demo is waiting in.
# Environment: DEMO_TIMEOUT (seconds per wait, default 60), DEMO_DIR (state dir).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
dir="$(realpath -m "${DEMO_DIR:-$repo/target/testbed/demo}")"
export TESTBED_DIR="$dir"
logs="$dir/logs"
export KUBECONFIG="$dir/kubeconfig"
kubectl="$repo/target/testbed/bin/kubectl"
operator_bin="$repo/target/debug/ads-export-operator"
emulator_bin="$repo/target/debug/ads-emulator"
region=us-west-2
ns=demo
name=inventory-export # metadata.name in examples/basic.yaml and examples/stopped.yaml
timeout="${DEMO_TIMEOUT:-60}"
[[ "$timeout" =~ ^[1-9][0-9]*$ ]] || { echo "demo: DEMO_TIMEOUT must be a number of seconds" >&2; exit 2; }

mode=run
case "${1:-}" in
  "") ;;
  --keep) mode=keep ;;
  --down) mode=down ;;
  -h | --help) sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: $0 [--keep | --down]" >&2; exit 2 ;;
esac
(($# <= 1)) || { echo "usage: $0 [--keep | --down]" >&2; exit 2; }

start_ms="$(date +%s%3N)"
elapsed() { # seconds since start, e.g. "12.3s"
  local ms=$(($(date +%s%3N) - start_ms))
  printf '%d.%ds' $((ms / 1000)) $((ms % 1000 / 100))
}
stamp() { printf '%s %7s' "$(date +%T.%3N)" "+$(elapsed)"; } # "14:02:03.123  +12.3s"
say() { printf '%s  %s\n' "$(stamp)" "$*"; }
step() { printf '\n==> %s\n' "$*"; }
show() { printf '$ %s\n' "$*"; } # echo a command before running it
die() { printf '\ndemo: ERROR: %s\n' "$*" >&2; exit 1; }
k() { "$kubectl" "$@"; }

# ---------------------------------------------------------------- processes

# The emulator and the operator run in their own sessions (a Ctrl-C aimed at this script
# does not hit them; the trap stops them in order), logs in logs/<name>.log. Unless --keep,
# they also get SIGTERM should this script die without running its trap (SIGKILL); the bed
# has its own watchdog for that. hack/lib/daemons.sh tracks them (and the bed's etcd and
# kube-apiserver, whose pidfiles share this dir) and reports how any of them died.
# shellcheck source=lib/daemons.sh
source "$repo/hack/lib/daemons.sh"
# shellcheck source=lib/ports.sh
source "$repo/hack/lib/ports.sh"
DAEMONS_PREFIX=demo
[[ "$mode" == keep ]] || DAEMONS_PDEATHSIG=TERM
daemons_init "$dir"

stop_everything() {
  daemon_stop ads-export-operator ads-emulator
  hack/testbed.sh down 8>&- || true
}

# ---------------------------------------------------------------- --down

mkdir -p "$(dirname "$dir")"
exec 8>"$dir.lock"
flock -n 8 || die "another hack/demo.sh is running (lock $dir.lock)"

if [[ "$mode" == down ]]; then
  stop_everything
  exit 0
fi

for t in cargo go curl python3 setsid setpriv flock; do
  command -v "$t" >/dev/null || die "'$t' is required (Rust, Go, curl, util-linux; see README)"
done

# ---------------------------------------------------------------- teardown

on_exit() {
  local rc=$?
  trap - EXIT INT TERM HUP
  if ((rc != 0 && rc != 129 && rc != 130 && rc != 143)); then # failed, not interrupted
    daemon_check || true # a death not reported yet
    for f in ads-export-operator:30 ads-emulator:10; do # the live ones' last words
      if daemon_alive "${f%:*}" && [[ -s "$logs/${f%:*}.log" ]]; then
        printf '\n---- tail of %s ----\n' "$logs/${f%:*}.log" >&2
        tail -n "${f#*:}" "$logs/${f%:*}.log" >&2 || true
        printf -- '----\n' >&2
      fi
    done
  fi
  if ((rc != 0)) || [[ "$mode" != keep ]]; then
    step "tear down"
    stop_everything
    [[ -d "$logs" ]] && echo "demo: logs kept in $logs" >&2
  fi
  if ((rc == 130 || rc == 143 || rc == 129)); then
    echo "demo: interrupted" >&2
  elif ((rc != 0)); then
    echo "demo: FAILED (exit $rc)" >&2
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# ---------------------------------------------------------------- watching

# Re-aligns `kubectl get cex` output at fixed column widths, so that rows printed
# one by one (some columns still empty) line up under one header.
align() {
  awk -v mins="NAME=${#name},EXPORT ID=43,STATUS=17,STOPPED=7,READY=5,STARTED=24,STOPPED AT=24" '
    BEGIN { n = split(mins, kv, ","); for (i = 1; i <= n; i++) { split(kv[i], p, "="); min[p[1]] = p[2] } }
    NR == 1 { # column names, separated by 2+ spaces (a name may hold one space)
      rest = $0; off = 0
      while (match(rest, /[^ ]+( [^ ]+)*/)) {
        nc++; col[nc] = substr(rest, RSTART, RLENGTH); at[nc] = off + RSTART
        off += RSTART + RLENGTH - 1; rest = substr(rest, RSTART + RLENGTH)
      }
    }
    {
      line = ""
      for (i = 1; i <= nc; i++) {
        v = (i < nc) ? substr($0, at[i], at[i + 1] - at[i]) : substr($0, at[i])
        gsub(/^ +| +$/, "", v)
        w = length(col[i]); if (min[col[i]] > w) w = min[col[i]]
        line = line sprintf(i < nc ? "%-" w "s   " : "%s", v)
      }
      print line
    }'
}

# Prints `kubectl get cex -n demo` (the header once, then the row with a timestamp
# each time it changes, Age aside) until the object shows <status> and Ready=True.
watch_until() { # <exportStatus>
  local want="$1" deadline=$((SECONDS + timeout)) out table key last="" state
  while :; do
    # Every daemon the demo depends on, not only the operator.
    daemon_check || die "a daemon died while waiting for $want with Ready=True (logs: $logs)"
    # State first, then the table: a table read after the state is never older.
    state="$(k get cex -n "$ns" "$name" \
      -o jsonpath='{.status.exportStatus}/{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)"
    out="$(k get cex -n "$ns" 2>&1)" || { daemon_check || true; die "kubectl get cex failed: $out"; }
    key="$(awk 'NR > 1 { $NF = ""; print }' <<<"$out")" # all columns but Age
    if [[ "$key" != "$last" ]]; then
      if [[ "$(head -c 4 <<<"$out")" == NAME ]]; then
        table="$(align <<<"$out")"
        [[ -n "$last" ]] || printf '%-20s  %s\n' TIME "$(head -n 1 <<<"$table")"
        printf '%s  %s\n' "$(stamp)" "$(sed -n 2p <<<"$table")"
      else
        printf '%s  %s\n' "$(stamp)" "$out"
      fi
      last="$key"
    fi
    [[ "$state" == "$want/True" ]] && return 0
    ((SECONDS < deadline)) ||
      die "no $want with Ready=True after ${timeout}s (now: ${state:-nothing})"
    sleep 0.3
  done
}

# ---------------------------------------------------------------- the demo

step "build the operator and the emulator (cargo build --bins)"
cargo build --bins 8>&-

step "start the test bed (etcd + kube-apiserver) in $dir"
# A fresh bed every time: leftovers of an interrupted or --keep run go first.
daemon_stop ads-export-operator ads-emulator
hack/testbed.sh down >/dev/null 2>&1 8>&- || true
if [[ "$mode" == keep ]]; then
  hack/testbed.sh up 8>&-
else
  hack/testbed.sh up --watch-pid $$ 8>&- # its watchdog tears the bed down should we die
fi
# Started by hack/testbed.sh (which has exited): watched by their pidfiles in $dir.
daemon_watch etcd kube-apiserver
daemon_check || die "the test bed is not running"

step "install the CRDs"
show kubectl apply --server-side -f crds/continuousexports.adsexport.io.yaml -f crds/exportaccounts.adsexport.io.yaml
k apply --server-side -f crds/continuousexports.adsexport.io.yaml -f crds/exportaccounts.adsexport.io.yaml
k wait --for condition=Established crd/continuousexports.adsexport.io crd/exportaccounts.adsexport.io \
  --timeout="${timeout}s" || { daemon_check || true; die "the CRDs did not become Established"; }

step "start the ADS emulator (home region $region)"
daemon_start ads-emulator "$logs/ads-emulator.log" "$emulator_bin" --listen 127.0.0.1:0 --home-region "$region" \
  --start-delay 2s --stop-delay 3s || die "the emulator did not start"
url=""
emulator_url() { # sets url once the emulator has logged it
  url="$(grep -o 'listening on http://[^ ]*' "$logs/ads-emulator.log" 2>/dev/null | cut -d' ' -f3)" && [[ -n "$url" ]]
}
daemon_wait_until 20 "the emulator to print its URL" emulator_url || die "the emulator is not serving"
echo "$url" >"$dir/emulator.url"
say "ads-emulator at $url (START_IN_PROGRESS for 2s, STOP_IN_PROGRESS for 3s)"

step "start the operator"
metrics_port="$(free_ports 1)"
metrics="http://127.0.0.1:$metrics_port"
# A clean environment: dummy credentials (the emulator wants signed requests but
# does not check signatures), no profile, no instance metadata; STS (the
# ExportAccounts' AssumeRole) at the emulator too, never at AWS.
daemon_start ads-export-operator "$logs/ads-export-operator.log" \
  env -i PATH="$PATH" HOME="$HOME" KUBECONFIG="$KUBECONFIG" ${RUST_LOG:+"RUST_LOG=$RUST_LOG"} \
  AWS_ACCESS_KEY_ID=AKIDEMOEXAMPLE AWS_SECRET_ACCESS_KEY=demo-secret-not-checked \
  AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
  AWS_ENDPOINT_URL_STS="$url" \
  "$operator_bin" run --aws-region "$region" --aws-endpoint-url "$url" --metrics-addr "127.0.0.1:$metrics_port" ||
  die "the operator did not start"
show AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... AWS_ENDPOINT_URL_STS="$url" ads-export-operator run --aws-region "$region" \
  --aws-endpoint-url "$url" --metrics-addr "127.0.0.1:$metrics_port"
daemon_wait_until "$timeout" "the operator to answer $metrics/healthz" curl -sf --max-time 2 -o /dev/null "$metrics/healthz" ||
  die "the operator is not serving"
echo "$metrics" >"$dir/metrics.url"
say "operator up ($metrics/healthz), log $logs/ads-export-operator.log"

step "start an export: examples/basic.yaml"
k create namespace "$ns" >/dev/null
show kubectl apply -n "$ns" -f examples/basic.yaml
k apply -n "$ns" -f examples/basic.yaml
watch_until ACTIVE

step "stop it: examples/stopped.yaml (same object, spec.stopped: true)"
show kubectl apply -n "$ns" -f examples/stopped.yaml
k apply -n "$ns" -f examples/stopped.yaml
watch_until INACTIVE

step "events and status"
show kubectl describe cex -n "$ns" "$name" "  # its Events section"
k describe cex -n "$ns" "$name" | sed -n '/^Events:/,$p'
echo
show kubectl get cex -n "$ns" "$name" -o yaml "  # its status"
k get cex -n "$ns" "$name" -o yaml | sed -n '/^status:/,$p'

step "delete it (the finalizer adsexport.io/stop-export runs first)"
show kubectl delete cex -n "$ns" "$name"
k delete cex -n "$ns" "$name" --timeout="${timeout}s"
show kubectl get cex -n "$ns"
k get cex -n "$ns" 2>&1
if k get cex -n "$ns" "$name" >/dev/null 2>&1; then die "$name still exists"; fi

step "what the emulator saw"
show curl -s "$url/_emulator/exports"
curl -sf "$url/_emulator/exports"
echo
show curl -s "$url/_emulator/counters"
curl -sf "$url/_emulator/counters"
echo

if [[ "$mode" == keep ]]; then
  cat <<EOF

==> demo done in $(elapsed); everything keeps running:

  export KUBECONFIG=$KUBECONFIG PATH=$repo/target/testbed/bin:\$PATH
  kubectl apply -n $ns -f examples/basic.yaml && kubectl get cex -n $ns -w

  curl -s $metrics/metrics | grep ^ads_   # the operator's metrics
  curl -s $url/_emulator/exports      # the emulator's exports
  curl -s $url/_emulator/counters     # calls per operation
  curl -s -X POST $url/_emulator/faults \\
    -d '{"operation":"StartContinuousExport","error":"AuthorizationErrorException","count":3}'

  logs:  $logs/ads-export-operator.log, $logs/ads-emulator.log
  stop:  hack/demo.sh --down
EOF
else
  step "demo done in $(elapsed)"
fi
