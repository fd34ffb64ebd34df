#!/usr/bin/env bash
# Runs one loadgen measurement against a fresh wsgate server and prints everything BENCHMARKS.md
# records: date, machine, server flags, the exact loadgen command, and its output.
#
#   loadgen/bench/run.sh "<server flags>" <loadgen args...>
#
# WSGATE (default target/release/wsgate) and LOADGEN (default target/release/wsgate-loadgen)
# pick the binaries. The server listens on 127.0.0.1 on a port the kernel picks (`--port 0`;
# the address is read from its "wsgate listening" log line) and is stopped at the end.
# RUST_LOG (default warn,wsgate::server=info) must let that line through. With RUN_PIDFILE set,
# the server's pid is written to that file once it listens (perfstat.sh uses it).
set -euo pipefail
cd "$(dirname "$0")/../.."
WSGATE=${WSGATE:-target/release/wsgate}
LOADGEN=${LOADGEN:-target/release/wsgate-loadgen}
server_flags=$1
shift
echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')" >&2
echo "machine: nproc=$(nproc), $(lscpu | grep 'Model name' | sed 's/  */ /g'), load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "server: $WSGATE --host 127.0.0.1 --port 0 --jwt-secret s $server_flags" >&2
log=$(mktemp)
# A fresh store for every run (STORE=disk is the default), so no run reads another's state.
data=$(mktemp -d)
pid=
trap 'if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi; rm -rf "$log" "$data"' EXIT
# shellcheck disable=SC2086
LOG_FORMAT=text RUST_LOG=${RUST_LOG:-warn,wsgate::server=info} "$WSGATE" --host 127.0.0.1 --port 0 --jwt-secret s \
  --data-dir "$data" $server_flags >"$log" 2>&1 &
pid=$!
# shellcheck source=loadgen/bench/listen.sh
source loadgen/bench/listen.sh
addr=$(wait_listen_addr "$log" "$pid") || exit 1
for _ in $(seq 50); do
  curl -sf "http://$addr/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
if [[ -n ${RUN_PIDFILE:-} ]]; then
  echo "$pid" >"$RUN_PIDFILE"
fi
echo "loadgen: wsgate-loadgen $* --url ws://$addr/ws --jwt-secret s --server-pid <pid>" >&2
"$LOADGEN" "$@" --url "ws://$addr/ws" --jwt-secret s --server-pid "$pid" --quiet
