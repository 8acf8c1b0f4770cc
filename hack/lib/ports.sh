# shellcheck shell=bash
# free_ports N [RUNNER...]: prints N distinct free TCP ports on 127.0.0.1, space-separated.
# The ports are only free when checked (the sockets close on return): callers retry on a
# lost race. With RUNNER (e.g. a function that enters a network namespace), the check runs
# through it, so the ports are free in that namespace.
free_ports() {
  local n="$1"
  shift
  "$@" python3 - "$n" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}
