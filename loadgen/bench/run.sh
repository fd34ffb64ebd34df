#!/usr/bin/env bash
# Runs one loadgen measurement against a fresh wsgate server and prints everything BENCHMARKS.md
# records: date, machine, server flags, the exact loadgen command, and its output.
#
#   loadgen/bench/run.sh "<server flags>" <loadgen args...>
#
# WSGATE (default target/release/wsgate) and LOADGEN (default target/release/wsgate-loadgen)
# pick the binaries. The server listens on 127.0.0.1:3999 and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
WSGATE=${WSGATE:-target/release/wsgate}
LOADGEN=${LOADGEN:-target/release/wsgate-loadgen}
server_flags=$1
shift
echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')" >&2
echo "machine: nproc=$(nproc), $(lscpu | grep 'Model name' | sed 's/  */ /g'), load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "server: $WSGATE --host 127.0.0.1 --port 3999 --jwt-secret s $server_flags" >&2
# shellcheck disable=SC2086
RUST_LOG=warn "$WSGATE" --host 127.0.0.1 --port 3999 --jwt-secret s $server_flags >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  curl -sf http://127.0.0.1:3999/healthz >/dev/null 2>&1 && break
  sleep 0.1
done
echo "loadgen: wsgate-loadgen $* --url ws://127.0.0.1:3999/ws --jwt-secret s --server-pid <pid>" >&2
"$LOADGEN" "$@" --url ws://127.0.0.1:3999/ws --jwt-secret s --server-pid "$pid" --quiet
