#!/usr/bin/env bash
# A bounded soak with connection churn: starts a release wsgate server on loopback (127.0.0.1,
# on a port the kernel picks: `--port 0`, the address read from its log), runs the
# loadgen's `chat` scenario against it ROUNDS times back to back (users in rooms publishing at
# a per-user rate, disconnect/reconnect churn), samples the server's RSS every second, and
# checks that memory and state come back once the load is gone.
#
#   loadgen/bench/soak.sh DURATION [ROUNDS]      # DURATION per round: 600, 90s, 10m, 1h
#
# Each round is followed by an idle phase: every connection closed, IDLE seconds of quiet (the
# shards call mi_collect once a second), then the round's "after" RSS is read. A leak shows as
# after-RSS growing with every round; memory the allocator keeps varies from round to round
# without a trend (RELIABILITY.md, "Soak", tells the two apart by counting the live heap).
#
# Writes to OUT (default target/soak/<UTC time>):
#   rss.csv            one row a second: unix_time,elapsed_s,phase,rss_kib,connections
#   round-N.json/.txt  the loadgen's JSON summary and table for round N
#   stats-after-N.json GET /api/v1/stats after round N's idle phase
#   server.log         the server's log (RUST_LOG=warn,wsgate::server=info unless set: warnings
#                      and the "wsgate listening addr=…" line, which the script needs)
#   summary.txt        what is printed at the end
#
# Exit status: 0 if after-RSS ≤ baseline + MAX_GROWTH_MIB, the server holds no connection,
# user or room after the last idle phase, every loadgen run succeeded and the server logged no
# panic; 1 otherwise (also when the server does not start or log its address within 5 s; 2: bad
# usage, binaries missing).
#
# Knobs (environment): WSGATE, LOADGEN (binaries; default target/release/…), CONNECTIONS (10000),
# ROOMS (100), RATE_PER_USER (0.2), CHURN (50 reconnects/s), FORMAT (json), IDLE (15 s),
# MAX_GROWTH_MIB (16), SERVER_FLAGS (extra server flags), OUT. There is no port knob: the kernel
# picks one, so soaks can run next to other servers and tests. The server inherits the
# environment, so allocator options apply to it (e.g. MIMALLOC_ARENA_EAGER_COMMIT=0).
set -euo pipefail
cd "$(dirname "$0")/../.."

usage() { sed -n '2,10p' "$0" >&2; exit 2; }
[[ $# -ge 1 && $# -le 2 ]] || usage
duration=$1
rounds=${2:-1}
case $duration in
  *h) secs=$(( ${duration%h} * 3600 )) ;;
  *m) secs=$(( ${duration%m} * 60 )) ;;
  *s) secs=${duration%s} ;;
  *) secs=$duration ;;
esac
[[ $secs =~ ^[0-9]+$ && $secs -gt 0 && $rounds =~ ^[0-9]+$ && $rounds -gt 0 ]] || usage

WSGATE=${WSGATE:-target/release/wsgate}
LOADGEN=${LOADGEN:-target/release/wsgate-loadgen}
CONNECTIONS=${CONNECTIONS:-10000}
ROOMS=${ROOMS:-100}
RATE_PER_USER=${RATE_PER_USER:-0.2}
CHURN=${CHURN:-50}
FORMAT=${FORMAT:-json}
IDLE=${IDLE:-15}
MAX_GROWTH_MIB=${MAX_GROWTH_MIB:-16}
SERVER_FLAGS=${SERVER_FLAGS:-}
OUT=${OUT:-target/soak/$(date -u '+%Y%m%d-%H%M%S')}
SECRET=soak-jwt-secret
API_KEY=soak-api-key-1
mkdir -p "$OUT"

for bin in "$WSGATE" "$LOADGEN"; do
  [[ -x $bin ]] || { echo "soak: $bin not built (cargo build --release -p wsgate -p wsgate-loadgen)" >&2; exit 2; }
done

log() { echo "$*" | tee -a "$OUT/summary.txt" >&2; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
stats() { curl -s --max-time 5 -H "X-API-Key: $API_KEY" "$BASE/api/v1/stats"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

log "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
log "machine: nproc=$(nproc), $(lscpu | grep 'Model name' | sed 's/  */ /g'), kernel $(uname -r), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
log "soak: $rounds round(s) of ${secs}s; $CONNECTIONS connections, $ROOMS rooms, $RATE_PER_USER publishes/s/user, $CHURN reconnects/s, $FORMAT; idle ${IDLE}s after each"

# shellcheck disable=SC2086
LOG_FORMAT=text RUST_LOG=${RUST_LOG:-warn,wsgate::server=info} "$WSGATE" --host 127.0.0.1 --port 0 --jwt-secret "$SECRET" \
  --api-keys "$API_KEY" --data-dir "$OUT/data" $SERVER_FLAGS >"$OUT/server.log" 2>&1 &
server=$!
sampler=
cleanup() {
  [[ -n $sampler ]] && kill "$sampler" 2>/dev/null || true
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
}
trap cleanup EXIT
# shellcheck source=loadgen/bench/listen.sh
source loadgen/bench/listen.sh
if ! addr=$(wait_listen_addr "$OUT/server.log" "$server"); then
  log "soak: the server did not start (its log: $OUT/server.log)"
  exit 1
fi
BASE=http://$addr
log "server: $WSGATE --host 127.0.0.1 --port 0 --jwt-secret <secret> --api-keys <key> $SERVER_FLAGS (pid $server, listening on $addr)"
for _ in $(seq 50); do
  curl -sf --max-time 1 "$BASE/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf --max-time 1 "$BASE/healthz" >/dev/null || { log "soak: the server did not start"; exit 1; }

# The sampler: one row a second until the server is gone. The phase comes from a file so the
# main script can move it along.
echo start >"$OUT/phase"
echo "unix_time,elapsed_s,phase,rss_kib,connections" >"$OUT/rss.csv"
(
  t0=$(date +%s.%N)
  while kill -0 "$server" 2>/dev/null; do
    now=$(date +%s.%N)
    rss=$(rss_kib "$server" 2>/dev/null) || break
    conns=$(curl -s --max-time 1 "$BASE/metrics" 2>/dev/null |
      awk '/^wsgate_connections\{/ { n += $2 } END { print n + 0 }') || conns=
    awk -v now="$now" -v t0="$t0" -v phase="$(cat "$OUT/phase")" -v rss="$rss" -v c="$conns" \
      'BEGIN { printf "%.3f,%.1f,%s,%s,%s\n", now, now - t0, phase, rss, c }' >>"$OUT/rss.csv"
    sleep "$(awk -v a="$now" -v b="$(date +%s.%N)" 'BEGIN { s = 1 - (b - a); print (s > 0 ? s : 0) }')"
  done
) &
sampler=$!

sleep 5
baseline=$(rss_kib "$server")
log "baseline RSS (started, 5 s idle, no connection): $(mib "$baseline") MiB"

failed_runs=0
afters=()
for round in $(seq "$rounds"); do
  echo "load-$round" >"$OUT/phase"
  log "round $round: loadgen chat for ${secs}s from $(date -u '+%H:%M:%S UTC') (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  # Bounded twice: the loadgen's own --duration/--drain, and a hard timeout around it.
  set +e
  timeout --kill-after=10 $(( secs + 180 )) "$LOADGEN" chat -n "$CONNECTIONS" --rooms "$ROOMS" \
    --rate-per-user "$RATE_PER_USER" --churn "$CHURN" --duration "${secs}s" --connect-rate 10000 \
    --format "$FORMAT" --url "ws://$addr/ws" --jwt-secret "$SECRET" \
    --server-pid "$server" --quiet --json >"$OUT/round-$round.json" 2>"$OUT/round-$round.txt"
  rc=$?
  set -e
  if [[ $rc -ne 0 ]]; then
    failed_runs=$(( failed_runs + 1 ))
    log "round $round: loadgen exited with $rc (see $OUT/round-$round.txt)"
  fi
  echo "idle-$round" >"$OUT/phase"
  # Wait for the server to see every connection gone, then stay idle.
  for _ in $(seq 60); do
    [[ $(stats | jq -r '.connections') == 0 ]] && break
    sleep 0.5
  done
  sleep "$IDLE"
  after=$(rss_kib "$server")
  afters+=("$after")
  stats >"$OUT/stats-after-$round.json"
  log "round $round: after RSS (${IDLE}s idle) $(mib "$after") MiB; $(jq -c '{connections, users, rooms}' "$OUT/stats-after-$round.json"); load average $(cut -d' ' -f1-3 /proc/loadavg)"
done
echo end >"$OUT/phase"
sleep 1.5

# Peak: the largest 1-second sample, and the kernel's high-water mark (which catches spikes
# between samples).
peak=$(awk -F, 'NR > 1 && $4 > p { p = $4 } END { print p + 0 }' "$OUT/rss.csv")
hwm=$(hwm_kib "$server")
final=$OUT/stats-after-$rounds.json
sum() { jq -s "map($1 // 0) | add" "$OUT"/round-*.json; }
after=${afters[-1]}
growth=$(( after - baseline ))
panics=$(grep -ci panic "$OUT/server.log" || true)

log ""
log "== soak summary ($OUT) =="
log "duration                 $rounds × ${secs}s of load"
log "connections              $CONNECTIONS at a time; $(sum .established) established, $(sum .failed) failed, $(sum .reconnects) reconnects (loadgen)"
log "server connections total $(jq '.connectionsTotal' "$final") accepted (server counter, whole run)"
log "publishes                $(sum .published) sent, $(sum .acked) acknowledged"
log "deliveries               $(sum .received) received (loadgen); $(jq '.deliveries' "$final") (server)"
log "messages                 $(jq '.messagesIn' "$final") in, $(jq '.messagesOut' "$final") out (server)"
log "slow consumers           $(jq '.slowConsumers' "$final"); rate limited $(jq '.rateLimited' "$final"); auth failures $(jq '.authFailures' "$final"); heartbeat timeouts $(jq '.heartbeatTimeouts' "$final")"
log "latency p50/p99/max (µs) $(jq -r '[.latency.p50_us, .latency.p99_us, .latency.max_us] | map(floor) | join(" / ")' "$OUT/round-$rounds.json") (last round)"
log "RSS baseline             $(mib "$baseline") MiB"
log "RSS peak                 $(mib "$peak") MiB (1 s samples); VmHWM $(mib "$hwm") MiB"
after_list=$(for a in "${afters[@]}"; do printf '%s ' "$(mib "$a")"; done)
log "RSS after, per round     ${after_list}MiB"
log "RSS after − baseline     $(mib "$growth") MiB (threshold $MAX_GROWTH_MIB MiB)"
log "left after the last idle $(jq -c '{connections, users, rooms}' "$final")"
log "panics in server log     $panics"

status=0
if (( growth > MAX_GROWTH_MIB * 1024 )); then
  log "FAIL: after-RSS exceeds the baseline by more than $MAX_GROWTH_MIB MiB"
  status=1
fi
if [[ $(jq '.connections + .users + .rooms' "$final") != 0 ]]; then
  log "FAIL: connections, users or rooms remain after the load ended"
  status=1
fi
if (( failed_runs > 0 || panics > 0 )); then
  log "FAIL: $failed_runs loadgen run(s) failed, $panics panic line(s) in the server log"
  status=1
fi
(( status == 0 )) && log "PASS"
exit "$status"
