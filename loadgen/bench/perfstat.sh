#!/usr/bin/env bash
# One run.sh measurement with `perf stat` attached to the server (and, with PERF_LOADGEN=1, to
# the loadgen processes too) for a window of the run: counts such as server CPU time, page
# faults or syscalls per delivery, next to the loadgen's own figures.
#
#   loadgen/bench/perfstat.sh <events> <start after s> <window s> "<server flags>" <loadgen args...>
#
# e.g. loadgen/bench/perfstat.sh task-clock,page-faults,context-switches 2.5 9 \
#        "--rate-per-sec 1000000 --rate-burst 1000000" fanout -n 10001 --publishers 1 --rooms 1 \
#        --mode burst --burst 300 --interval 2s --duration 10s --connect-rate 10000 --format json
#
# Needs `perf` (Debian: linux-perf) and the rights to attach to the processes. WSGATE and
# LOADGEN pick the binaries, as for run.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
events=$1 start=$2 window=$3
shift 3
out=$(mktemp)
trap 'rm -f "$out" "$out".*' EXIT
loadgen/bench/run.sh "$@" >"$out" 2>&1 &
run=$!
sleep "$start"
server=$(pgrep -f -- '--host 127.0.0.1 --port 3999 --jwt-secret s' | head -1)
perf stat -e "$events" -p "$server" -- sleep "$window" 2>"$out.server" &
if [ "${PERF_LOADGEN:-0}" = 1 ]; then
  loadgens=$(pgrep -f -- '--url ws://127.0.0.1:3999/ws' | paste -sd,)
  perf stat -e "$events" -p "$loadgens" -- sleep "$window" 2>"$out.loadgen" &
fi
wait
cat "$out"
echo "== perf stat, server, ${window} s from ${start} s:"
grep -vE '^\s*$|Performance counter' "$out.server"
if [ -f "$out.loadgen" ]; then
  echo "== perf stat, loadgen, ${window} s from ${start} s:"
  grep -vE '^\s*$|Performance counter' "$out.loadgen"
fi
