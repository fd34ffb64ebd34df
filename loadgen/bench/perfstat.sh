#!/usr/bin/env bash
# One run.sh measurement with `perf stat` attached to the server (and, with PERF_LOADGEN=1, to
# the loadgen processes too: the coordinator and its worker processes) for a window of the run:
# counts such as server CPU time, page faults or syscalls per delivery, next to the loadgen's
# own figures.
#
#   loadgen/bench/perfstat.sh <events> <start after s> <window s> "<server flags>" <loadgen args...>
#
# e.g. loadgen/bench/perfstat.sh task-clock,page-faults,context-switches 2.5 9 \
#        "--rate-per-sec 1000000 --rate-burst 1000000" fanout -n 10001 --publishers 1 --rooms 1 \
#        --mode burst --burst 300 --interval 2s --duration 10s --connect-rate 10000 --format json
#
# Needs `perf` (Debian: linux-perf) and the rights to attach to the processes. WSGATE and
# LOADGEN pick the binaries, as for run.sh. The processes are this run's own (run.sh's server
# pid through RUN_PIDFILE, its loadgen child and that one's children), so runs side by side
# do not mix.
set -euo pipefail
cd "$(dirname "$0")/../.."
events=$1 start=$2 window=$3
shift 3
out=$(mktemp)
trap 'rm -f "$out" "$out".*' EXIT
RUN_PIDFILE=$out.pid loadgen/bench/run.sh "$@" >"$out" 2>&1 &
run=$!
fail() {
  echo "perfstat.sh: $*" >&2
  kill "$run" 2>/dev/null || true
  wait "$run" 2>/dev/null || true
  cat "$out" >&2
  exit 1
}
sleep "$start"
# Bounded waits, in case the start is shorter than the server's or the loadgen's start-up.
server=
for _ in $(seq 100); do
  [[ -s $out.pid ]] && server=$(cat "$out.pid") && break
  kill -0 "$run" 2>/dev/null || break
  sleep 0.1
done
[[ -n $server ]] || fail "run.sh wrote no server pid to RUN_PIDFILE within 10 s"
loadgens=
if [ "${PERF_LOADGEN:-0}" = 1 ]; then
  # The loadgen is run.sh's child with `--server-pid <this server>`; its workers (when it runs
  # more than one) are its child processes, started as it starts.
  coordinator=
  for _ in $(seq 50); do
    coordinator=$(pgrep -P "$run" -f -- "--server-pid $server --quiet" | head -1 || true)
    [[ -n $coordinator ]] && break
    sleep 0.1
  done
  [[ -n $coordinator ]] || fail "no loadgen process for server $server within 5 s"
  loadgens=$({ echo "$coordinator"; pgrep -P "$coordinator" || true; } | paste -sd,)
fi
perf stat -e "$events" -p "$server" -- sleep "$window" 2>"$out.server" &
if [[ -n $loadgens ]]; then
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
