#!/usr/bin/env bash
# Runs one `wsgate-loadgen --protocol socketio` measurement against a fresh Socket.IO server,
# Node's socket.io (server.js beside this script) or wsgate's Socket.IO layer, and prints what
# BENCHMARKS.md records: date, machine, load average, the server's command, the exact loadgen
# command, its output, and the server's CPU time over the run.
#
#   benches/socketio-node/compare.sh node|wsgate <loadgen args...>
#
# e.g. (the same arguments for both servers):
#   benches/socketio-node/compare.sh node   connect -n 19000 --connect-rate 40000 --duration 10s --source-addrs 2
#   benches/socketio-node/compare.sh wsgate connect -n 19000 --connect-rate 40000 --duration 10s --source-addrs 2
#   benches/socketio-node/compare.sh node   fanout -n 5001 --mode closed --window 1 --duration 10s --connect-rate 10000
#   benches/socketio-node/compare.sh node   push -n 10000 --rate 1000 --senders 4 --duration 10s --connect-rate 10000
#   benches/socketio-node/compare.sh node   connect -n 5000 --sio-transport polling --duration 10s
#
# The loadgen gets `--protocol socketio --url ws://127.0.0.1:<port> --jwt-secret s
# --server-pid <pid> --quiet` after the given arguments, and `--sio-path $SIO_MSGPACK_PATH`
# with `--sio-parser msgpack` (the parser's own path on each server). Both servers listen on
# 127.0.0.1, port 0 (the kernel picks; the port is read from the server's first log line).
# Both take the REST API key $API_KEY (default compare-api-key; wsgate `--api-keys`, Node
# `API_KEYS`), and the loadgen reads it from its environment (`push --api-key`).
#
# LOADGEN (default target/release/wsgate-loadgen), WSGATE (default target/release/wsgate),
# WSGATE_FLAGS (extra server flags, default: wsgate's rate limit lifted as in the native
# fan-out runs), NODE_FLAGS (default --max-old-space-size=8192). node_modules is installed
# with `npm ci` when missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
LOADGEN=${LOADGEN:-target/release/wsgate-loadgen}
WSGATE=${WSGATE:-target/release/wsgate}
export API_KEY=${API_KEY:-compare-api-key}
server=${1:?usage: compare.sh node|wsgate <loadgen args...>}
shift
log=$(mktemp)
data=$(mktemp -d)
pid=
trap 'if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi; rm -rf "$log" "$data"' EXIT

echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')" >&2
echo "machine: nproc=$(nproc), $(lscpu | grep 'Model name' | sed 's/  */ /g'), load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
case $server in
  node)
    [[ -d $here/node_modules ]] || npm ci --no-audit --no-fund --prefix "$here" >&2
    NODE_FLAGS=${NODE_FLAGS:---max-old-space-size=8192}
    echo "server: API_KEYS=<key> node $NODE_FLAGS benches/socketio-node/server.js 0 (socket.io $(node -p "require('$here/node_modules/socket.io/package.json').version"), node $(node --version))" >&2
    # shellcheck disable=SC2086
    (cd "$here" && JWT_SECRET=s API_KEYS=$API_KEY exec node $NODE_FLAGS server.js 0) >"$log" 2>&1 &
    pid=$!
    SIO_MSGPACK_PATH=${SIO_MSGPACK_PATH:-/socket.io-msgpack/}
    ;;
  wsgate)
    WSGATE_FLAGS=${WSGATE_FLAGS:---rate-per-sec 1000000 --rate-burst 1000000}
    echo "server: $WSGATE --host 127.0.0.1 --port 0 --jwt-secret s --api-keys <key> --data-dir <fresh> $WSGATE_FLAGS" >&2
    # shellcheck disable=SC2086
    LOG_FORMAT=text RUST_LOG=${RUST_LOG:-warn,wsgate::server=info} "$WSGATE" --host 127.0.0.1 --port 0 \
      --jwt-secret s --api-keys "$API_KEY" --data-dir "$data" $WSGATE_FLAGS >"$log" 2>&1 &
    pid=$!
    SIO_MSGPACK_PATH=${SIO_MSGPACK_PATH:-/socket.io-msgpack/}
    ;;
  *)
    echo "compare.sh: the server is node or wsgate, not $server" >&2
    exit 2
    ;;
esac
port=
for _ in $(seq 100); do
  port=$(grep -o -m1 -E 'port=[0-9]+|addr=127\.0\.0\.1:[0-9]+' "$log" | grep -o -E '[0-9]+$' || true)
  [[ -n $port ]] && break
  kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
[[ -n $port ]] || { echo "compare.sh: the server printed no port" >&2; cat "$log" >&2; exit 1; }
sleep 0.5

cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
tck=$(getconf CLK_TCK)
args=("$@")
# The msgpack parser has its own path on each server.
if [[ " ${args[*]} " == *" --sio-parser msgpack "* && " ${args[*]} " != *" --sio-path "* ]]; then
  args+=(--sio-path "$SIO_MSGPACK_PATH")
fi
echo "loadgen: wsgate-loadgen ${args[*]} --protocol socketio --url ws://127.0.0.1:$port --jwt-secret s --server-pid <pid> --quiet (API_KEY=<key>)" >&2
before=$(cpu)
start=$(date +%s.%N)
status=0
"$LOADGEN" "${args[@]}" --protocol socketio --url "ws://127.0.0.1:$port" --jwt-secret s \
  --server-pid "$pid" --quiet || status=$?
after=$(cpu)
end=$(date +%s.%N)
awk -v b="$before" -v a="$after" -v t="$tck" -v s="$start" -v e="$end" \
  'BEGIN { printf "  server CPU                   %.2f s over %.1f s of loadgen run (%.2f cores)\n", (a-b)/t, e-s, (a-b)/t/(e-s) }'
exit $status
