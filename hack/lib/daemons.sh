# shellcheck shell=bash
# Daemons started by a long-lived bash script: tracked by their real PID, judged alive by
# the process itself (PID + start time from /proc/PID/stat, never by a command-line grep),
# reaped, and explained when they die (exit status or signal, whether we sent it, log tail).
#
# Usage (source it, then call from the script's MAIN shell, not from a subshell or $(...)):
#
#   source "$repo/hack/lib/daemons.sh"
#   DAEMONS_PREFIX=demo                   # prefix of every message (stderr), default "daemons"
#   DAEMONS_PDEATHSIG=TERM                # optional: the daemon gets SIGTERM when this shell dies
#   daemons_init "$dir"                   # state: $dir/<name>.pid, .sent, .exit
#   daemon_start etcd "$logs/etcd.log" "$bin/etcd" --data-dir ...  || die "..."
#   GOMEMLIMIT=256MiB daemon_start ...    # environment for the daemon: prefix assignments
#   daemon_watch etcd kube-apiserver      # also watch daemons another script recorded in $dir
#   daemon_wait_until 30 "etcd to answer /health" curl -sf "$url/health" || die "..."
#   daemon_alive etcd                     # exit 0 if the recorded process is alive
#   daemon_check                          # all watched daemons (or: daemon_check NAME...)
#   daemon_stop ads-export-operator etcd  # SIGTERM, grace, SIGKILL; reap; remove the pidfile
#
# Rules it keeps:
# - The daemon is a direct child of the calling shell: `( exec setsid [setpriv] CMD ) &` execs
#   in place (setsid does not fork: a background job of a non-interactive shell is not a
#   process group leader), so $! is the daemon itself; daemon_start waits for that exec.
#   It runs in its own session (a Ctrl-C or SIGHUP aimed at the caller does not reach it),
#   stdin /dev/null, stdout+stderr appended to LOG, no inherited fds above 2 (lock fds).
# - <name>.pid holds three lines: PID, start time (field 22 of /proc/PID/stat, clock ticks
#   since boot), log path. A process is "ours" only if both PID and start time match, so a
#   stale pidfile or a reused PID is never signalled. Signals go to the daemon's process
#   group (its session, which only it and its own children are in).
# - Every signal sent by daemon_stop is first recorded in <name>.sent ("TERM by <who>"), so
#   any script can tell a death it caused from one it did not.
# - The exit status is known to the daemon's parent only (wait); the parent writes it to
#   <name>.exit. For a daemon another, already finished, script started (hack/testbed.sh up)
#   the report says the status is unknown, and still says whether a signal was sent by us.
# - DAEMONS_PDEATHSIG uses `setpriv --pdeathsig`: Linux sends it when the parent THREAD
#   exits. The parent is this shell (daemon_start refuses to run in a subshell, whose exit
#   would fire it at once). The signal is armed right after the fork; if this shell dies
#   within that instant, the daemon gets no signal (the callers' watchdogs cover that).
#
# Tunables: DAEMONS_EXEC_TIMEOUT (s, default 10), DAEMONS_STOP_GRACE (s, default 20),
# DAEMONS_TAIL (log lines in a report, default 20), DAEMONS_POLL (s, default 0.2).

DAEMONS_DIR=""
DAEMONS_PREFIX="${DAEMONS_PREFIX:-daemons}"
DAEMONS_PDEATHSIG="${DAEMONS_PDEATHSIG:-}"
declare -gA DAEMONS_CHILD=()    # name -> pid, for daemons this shell started (it can wait)
declare -gA DAEMONS_STATUS=()   # name -> description of how it ended (once reaped)
declare -gA DAEMONS_REPORTED=() # name -> "pid start" whose death was already reported
declare -ga DAEMONS_WATCHED=()  # names daemon_check / daemon_wait_until watch by default

_daemon_say() { printf '%s: %s\n' "$DAEMONS_PREFIX" "$*" >&2; }

# daemons_init DIR: where the pidfiles and state files go (created by daemon_start).
daemons_init() {
  DAEMONS_DIR="$(realpath -m "$1")"
}

_daemon_need_init() {
  [[ -n "$DAEMONS_DIR" ]] && return 0
  _daemon_say "BUG: daemons_init was not called"
  return 1
}

# _daemon_stat PID: prints "<state> <start time>" from /proc/PID/stat (no fork).
_daemon_stat() {
  local line rest
  local -a f
  [[ "$1" =~ ^[0-9]+$ ]] || return 1
  { IFS= read -r line <"/proc/$1/stat"; } 2>/dev/null || return 1
  rest="${line##*) }" # the command name (field 2) may hold spaces and parentheses
  read -r -a f <<<"$rest"
  printf '%s %s\n' "${f[0]}" "${f[19]}"
}

# _daemon_same PID START: exit 0 if PID is alive (not a zombie) and started at START.
_daemon_same() {
  local st
  st="$(_daemon_stat "$1")" || return 1
  [[ "${st#* }" == "$2" && "${st%% *}" != Z && "${st%% *}" != X ]]
}

# _daemon_read NAME: sets _pid, _start, _log from <dir>/<name>.pid; exit 1 if none.
_daemon_read() {
  local f="$DAEMONS_DIR/$1.pid"
  _pid="" _start="" _log=""
  [[ -f "$f" ]] || return 1
  { IFS= read -r _pid && IFS= read -r _start && IFS= read -r _log; } <"$f" 2>/dev/null
  [[ "$_pid" =~ ^[0-9]+$ && "$_start" =~ ^[0-9]+$ ]]
}

# daemon_alive NAME: exit 0 if the recorded process (same PID, same start time) is alive.
daemon_alive() {
  local _pid _start _log
  _daemon_need_init || return 1
  _daemon_read "$1" && _daemon_same "$_pid" "$_start"
}

# daemon_pid NAME: prints the recorded PID if that process is alive.
daemon_pid() {
  local _pid _start _log
  _daemon_need_init || return 1
  _daemon_read "$1" && _daemon_same "$_pid" "$_start" && echo "$_pid"
}

# daemon_watch NAME...: daemon_check / daemon_wait_until also watch these (e.g. daemons
# recorded in the same dir by another script).
daemon_watch() {
  local n
  for n in "$@"; do _daemon_watched "$n" || DAEMONS_WATCHED+=("$n"); done
}

_daemon_watched() {
  local w
  for w in "${DAEMONS_WATCHED[@]}"; do [[ "$w" == "$1" ]] && return 0; done
  return 1
}

_daemon_unwatch() {
  local w keep=()
  for w in "${DAEMONS_WATCHED[@]}"; do [[ "$w" == "$1" ]] || keep+=("$w"); done
  DAEMONS_WATCHED=("${keep[@]}")
}

# _daemon_describe RC: "exited with status N" / "killed by SIGX" from a bash wait status.
_daemon_describe() {
  if (($1 > 128 && $1 < 128 + 65)); then
    printf 'killed by SIG%s' "$(kill -l $(($1 - 128)) 2>/dev/null || echo "#$(($1 - 128))")"
  else
    printf 'exited with status %s' "$1"
  fi
}

# _daemon_sent NAME: who signalled it, from <name>.sent ("" if nobody of ours did).
_daemon_sent() {
  local f="$DAEMONS_DIR/$1.sent"
  [[ -s "$f" ]] || return 0
  paste -sd ';' "$f" | sed 's/;/, then /g'
}

# _daemon_reap NAME PID: for a child of this shell, waits for it (it is dead) and records how
# it ended in DAEMONS_STATUS and <name>.exit. Otherwise uses <name>.exit if its parent wrote it.
_daemon_reap() {
  local name="$1" pid="$2" rc p rest
  if [[ -n "${DAEMONS_STATUS[$name]:-}" ]]; then return 0; fi
  if [[ "${DAEMONS_CHILD[$name]:-}" == "$pid" ]]; then
    if wait "$pid" 2>/dev/null; then rc=0; else rc=$?; fi
    DAEMONS_STATUS[$name]="$(_daemon_describe "$rc")"
    printf '%s %s\n' "$pid" "${DAEMONS_STATUS[$name]}" >"$DAEMONS_DIR/$name.exit"
  elif [[ -s "$DAEMONS_DIR/$name.exit" ]] && read -r p rest <"$DAEMONS_DIR/$name.exit" && [[ "$p" == "$pid" ]]; then
    DAEMONS_STATUS[$name]="$rest"
  else
    DAEMONS_STATUS[$name]="exit status unknown (pid $$ is not its parent)"
  fi
}

# _daemon_report NAME: prints how the recorded (dead) daemon ended, and its log tail.
_daemon_report() {
  local name="$1" _pid _start _log sent how
  _daemon_read "$name" || return 0
  _daemon_reap "$name" "$_pid"
  how="${DAEMONS_STATUS[$name]}"
  sent="$(_daemon_sent "$name")"
  case "$how" in
    killed\ by\ SIG*) if [[ -n "$sent" ]]; then how+=" (we sent it: $sent)"; else how+=" (not sent by these scripts)"; fi ;;
    exit\ status\ unknown*) if [[ -n "$sent" ]]; then how+=" (we sent: $sent)"; else how+=" (no signal from these scripts)"; fi ;;
    *) if [[ -n "$sent" ]]; then how+=" (after we sent: $sent)"; else how+=" (no signal from these scripts)"; fi ;;
  esac
  _daemon_say "$name (pid $_pid) died: $how"
  if [[ -n "$_log" ]]; then
    _daemon_say "---- last ${DAEMONS_TAIL:-20} lines of $_log ----"
    if [[ -s "$_log" ]]; then tail -n "${DAEMONS_TAIL:-20}" "$_log" >&2; else _daemon_say "(the log is empty)"; fi
    _daemon_say "----"
  fi
  DAEMONS_REPORTED[$name]="$_pid $_start"
}

# daemon_check [NAME...]: exit 0 if all (default: all watched) are alive; otherwise prints,
# once per death, each dead one's exit status or signal and its log tail, and exits 1.
daemon_check() {
  local name _pid _start _log rc=0
  _daemon_need_init || return 1
  (($#)) || set -- "${DAEMONS_WATCHED[@]}"
  for name in "$@"; do
    if ! _daemon_read "$name"; then
      _daemon_say "$name is not running (no pidfile $DAEMONS_DIR/$name.pid)"
      rc=1
      continue
    fi
    _daemon_same "$_pid" "$_start" && continue
    rc=1
    [[ "${DAEMONS_REPORTED[$name]:-}" == "$_pid $_start" ]] || _daemon_report "$name"
  done
  return $rc
}

_daemon_passthrough() { # PATH: exit 0 for the programs that exec in place before the daemon
  case "${1##*/}" in setsid | setpriv | env | nice | ionice | chrt | taskset) return 0 ;; esac
  return 1
}

# _daemon_execd PID: exit 0 once PID runs the daemon itself (not the forked shell or setsid).
_daemon_execd() {
  local exe cmdline
  exe="$(readlink "/proc/$1/exe" 2>/dev/null)" || return 1
  _daemon_passthrough "$exe" && return 1
  [[ "$exe" == "$(readlink "/proc/$$/exe")" ]] || return 0
  # The daemon is a shell too: it has exec'd once its command line differs from ours.
  cmdline="$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null)"
  [[ -n "$cmdline" && "$cmdline" != "$(tr '\0' ' ' <"/proc/$$/cmdline")" ]]
}

# _daemon_exec LOG CMD...: in the forked child: no inherited fds above 2 (lock fds), stdio
# to /dev/null and LOG, then exec setsid, which execs CMD in the same process.
_daemon_exec() {
  local fd log="$1"
  shift
  for fd in /proc/"$BASHPID"/fd/*; do
    fd="${fd##*/}"
    ((fd > 2)) && eval "exec $fd>&-"
  done
  exec setsid "$@" </dev/null >>"$log" 2>&1
}

# daemon_start NAME LOG CMD...: starts CMD in its own session (stdin /dev/null, stdout and
# stderr appended to LOG), records it in <dir>/NAME.pid and watches it. Returns 0 once the
# process runs CMD itself; 1 (after reporting why, and stopping it) if it died or did not
# exec within DAEMONS_EXEC_TIMEOUT seconds. Refuses if NAME is already running.
daemon_start() {
  local name="$1" log="$2" pid start i guard=() jobctl=0 deadline
  shift 2
  _daemon_need_init || return 1
  if [[ "$BASHPID" != "$$" ]]; then
    _daemon_say "BUG: daemon_start $name called in a subshell (pid $BASHPID): the daemon's parent must be the script itself"
    return 1
  fi
  if daemon_alive "$name"; then
    _daemon_say "$name is already running (pid $(daemon_pid "$name"))"
    return 1
  fi
  command -v -- "$1" >/dev/null || { _daemon_say "$name: cannot find '$1'"; return 1; }
  [[ -z "$DAEMONS_PDEATHSIG" ]] || guard=(setpriv --pdeathsig "$DAEMONS_PDEATHSIG" --)
  mkdir -p "$DAEMONS_DIR" "$(dirname "$log")"
  rm -f "$DAEMONS_DIR/$name.sent" "$DAEMONS_DIR/$name.exit"
  unset "DAEMONS_STATUS[$name]" "DAEMONS_REPORTED[$name]"
  [[ $- == *m* ]] && jobctl=1 && set +m # with job control the job would lead a group: setsid would fork
  _daemon_exec "$log" "${guard[@]}" "$@" & # (bash may note a signalled one as "<pid> Killed _daemon_exec ...")
  pid=$!
  ((jobctl)) && set -m
  start="$(_daemon_stat "$pid")" && start="${start#* }" || start=0 # 0: already gone
  printf '%s\n%s\n%s\n' "$pid" "$start" "$log" >"$DAEMONS_DIR/$name.pid.tmp"
  mv -f "$DAEMONS_DIR/$name.pid.tmp" "$DAEMONS_DIR/$name.pid"
  DAEMONS_CHILD[$name]="$pid"
  daemon_watch "$name"
  deadline=$((SECONDS + ${DAEMONS_EXEC_TIMEOUT:-10}))
  for ((i = 0; ; i++)); do
    if ! _daemon_same "$pid" "$start"; then
      _daemon_say "$name failed to start"
      _daemon_report "$name"
      _daemon_forget "$name"
      return 1
    fi
    _daemon_execd "$pid" && return 0
    if ((SECONDS >= deadline)); then
      _daemon_say "$name (pid $pid) did not exec '$1' within ${DAEMONS_EXEC_TIMEOUT:-10}s (it runs $(readlink "/proc/$pid/exe" 2>/dev/null || echo '?')); stopping it"
      daemon_stop "$name"
      return 1
    fi
    sleep 0.02
  done
}

_daemon_signal() { # NAME PID SIG: record, then signal the daemon's process group (or the PID)
  printf '%s by %s (pid %s) at %s\n' "$2" "${0##*/}" "$$" "$(date -u +%T)" >>"$DAEMONS_DIR/$1.sent"
  kill -"$2" -- "-$3" 2>/dev/null || kill -"$2" "$3" 2>/dev/null || true
}

# daemon_stop NAME...: SIGTERM to each recorded, alive one, then waits (DAEMONS_STOP_GRACE
# seconds, default 20) and SIGKILLs what is left; reaps them, says how each ended, removes
# the pidfiles. Signals only the process whose PID and start time were recorded.
daemon_stop() {
  local name _pid _start _log names=() pids=() starts=() i deadline how grace="${DAEMONS_STOP_GRACE:-20}"
  _daemon_need_init || return 1
  for name in "$@"; do
    _daemon_read "$name" || { rm -f "$DAEMONS_DIR/$name.pid"; continue; }
    [[ "$_pid" != "$$" ]] || continue # never this shell (a watchdog stopping its bed)
    if ! _daemon_same "$_pid" "$_start"; then
      # A watched daemon that died before we stopped it: say how (once), it may be why we
      # are stopping. Of an unwatched one (an earlier run's) its pidfile is all that is left.
      if [[ -n "${DAEMONS_CHILD[$name]:-}" ]] || _daemon_watched "$name"; then
        [[ "${DAEMONS_REPORTED[$name]:-}" == "$_pid $_start" ]] || _daemon_report "$name"
      else
        _daemon_say "$name (pid $_pid) was not running; removing its pidfile"
      fi
      _daemon_forget "$name"
      continue
    fi
    _daemon_signal "$name" TERM "$_pid"
    names+=("$name") pids+=("$_pid") starts+=("$_start")
  done
  for ((i = 0; i < ${#names[@]}; i++)); do
    deadline=$((SECONDS + grace))
    while _daemon_same "${pids[$i]}" "${starts[$i]}" && ((SECONDS < deadline)); do sleep 0.1; done
    if _daemon_same "${pids[$i]}" "${starts[$i]}"; then
      _daemon_say "${names[$i]} (pid ${pids[$i]}) ignored SIGTERM for ${grace}s; sending SIGKILL"
      _daemon_signal "${names[$i]}" KILL "${pids[$i]}"
      while _daemon_same "${pids[$i]}" "${starts[$i]}"; do sleep 0.1; done
    fi
    _daemon_reap "${names[$i]}" "${pids[$i]}"
    how="${DAEMONS_STATUS[${names[$i]}]}"
    [[ "$how" != exit\ status\ unknown* ]] || how="gone" # not our child: no status to tell
    _daemon_say "stopped ${names[$i]} (pid ${pids[$i]}): $how (we sent: $(_daemon_sent "${names[$i]}"))"
    _daemon_forget "${names[$i]}"
  done
}

_daemon_forget() { # NAME: drop its pidfile and state
  rm -f "$DAEMONS_DIR/$1.pid" "$DAEMONS_DIR/$1.sent"
  unset "DAEMONS_CHILD[$1]" "DAEMONS_REPORTED[$1]" "DAEMONS_STATUS[$1]"
  _daemon_unwatch "$1"
}

# daemon_wait_until SECONDS WHAT CMD...: runs CMD every DAEMONS_POLL seconds until it
# succeeds (exit 0). Meanwhile checks every watched daemon: exit 1 as soon as one dies
# (after daemon_check's report), or when SECONDS pass ("WHAT did not happen").
daemon_wait_until() {
  local limit="$1" what="$2" deadline
  shift 2
  deadline=$((SECONDS + limit))
  while :; do
    "$@" && return 0
    if ! daemon_check; then
      _daemon_say "while waiting for $what"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      _daemon_say "$what did not happen within ${limit}s"
      return 1
    fi
    sleep "${DAEMONS_POLL:-0.2}"
  done
}
