#!/usr/bin/env bash
# One loadgen measurement against N fresh wsgate nodes in cluster mode sharing one fresh
# redis-server, all on loopback; prints what BENCHMARKS.md records (date, machine, load
# average, the exact commands, the loadgen's table) and then the cluster's costs: each node's
# events and bytes received from Redis, and Redis's commands and bytes per published event.
#
#   benches/cluster/run.sh <nodes> "<server flags>" <loadgen args...>
#
# The loadgen gets `--url <node 0>,<node 1>,…` (dealt by its --spread), and with PUBLISH_NODE=k
# `--publish-url <node k>` (fanout's publishers, push's REST requests); URL_NODES="1 2" puts
# only those nodes in `--url` (default: all). CLUSTER=0 runs one
# node without CLUSTER_REDIS_URL and no Redis (the baseline). WSGATE and LOADGEN pick the
# binaries (default target/release/…). Everything is started here and stopped at the end; the
# loadgen is killed after TIME_LIMIT (default 300 s).
#
# Redis costs are deltas of `INFO commandstats`, `INFO stats` (`total_net_input_bytes`,
# `total_net_output_bytes`) and `INFO cpu` (`used_cpu_sys` + `used_cpu_user`) from the last moment before the first publish (sampled every
# 0.1 s while the connections are set up, so joins and subscriptions are not counted) to the
# end of the run, divided by the events published (Σ `wsgate_cluster_published_total`).
# Commands run inside the publish script count in commandstats as commands of their own; the
# script's own INFO calls are left out of the commands, not of the bytes (a few KB a run).
set -euo pipefail
cd "$(dirname "$0")/../.."
WSGATE=${WSGATE:-target/release/wsgate}
LOADGEN=${LOADGEN:-target/release/wsgate-loadgen}
CLUSTER=${CLUSTER:-1}
TIME_LIMIT=${TIME_LIMIT:-300}
nodes=$1
server_flags=$2
shift 2
if [[ $CLUSTER == 0 && $nodes != 1 ]]; then
  echo "CLUSTER=0 runs one node" >&2
  exit 2
fi
echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')" >&2
echo "machine: nproc=$(nproc), $(lscpu | grep 'Model name' | sed 's/  */ /g'), load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "build: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src loadgen protocol || echo ' (+ uncommitted changes)')" >&2
work=$(mktemp -d)
pids=()
sampler=
cleanup() {
  [[ -n $sampler ]] && kill "$sampler" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
# shellcheck source=loadgen/bench/listen.sh
source loadgen/bench/listen.sh

redis_flags=()
if [[ $CLUSTER != 0 ]]; then
  rport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir "$work/redis"
  redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$work/redis" \
    >"$work/redis.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do
    [[ $(redis-cli -p "$rport" PING 2>/dev/null) == PONG ]] && break
    sleep 0.1
  done
  [[ $(redis-cli -p "$rport" PING 2>/dev/null) == PONG ]] || { echo "redis-server did not start" >&2; exit 1; }
  echo "redis: $(redis-server --version | cut -d' ' -f1-3) on 127.0.0.1:$rport (--save '' --appendonly no)" >&2
  redis_flags=(--cluster-redis-url "redis://127.0.0.1:$rport")
fi

addrs=()
node_pids=()
for i in $(seq 0 $((nodes - 1))); do
  mkdir "$work/data$i"
  # shellcheck disable=SC2086
  LOG_FORMAT=text RUST_LOG=${RUST_LOG:-warn,wsgate::server=info} "$WSGATE" --host 127.0.0.1 --port 0 \
    --jwt-secret s --data-dir "$work/data$i" "${redis_flags[@]}" $server_flags >"$work/node$i.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  addr=$(wait_listen_addr "$work/node$i.log" "$pid") || exit 1
  for _ in $(seq 50); do
    curl -sf "http://$addr/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  if [[ $CLUSTER != 0 ]]; then
    # A node answers `join` with cluster.unavailable until its link to Redis is up.
    for _ in $(seq 100); do
      curl -sf "http://$addr/metrics" | grep -q '^wsgate_cluster_redis_up 1' && break
      sleep 0.1
    done
  fi
  addrs+=("$addr")
  node_pids+=("$pid")
  [[ $i == 0 ]] && first_pid=$pid
done
echo "server ×$nodes: $WSGATE --host 127.0.0.1 --port 0 --jwt-secret s ${redis_flags[*]:+${redis_flags[0]} redis://127.0.0.1:<port>} $server_flags" >&2

url_addrs=()
for i in ${URL_NODES:-$(seq 0 $((nodes - 1)))}; do url_addrs+=("${addrs[$i]}"); done
urls=$(printf 'ws://%s/ws,' "${url_addrs[@]}")
urls=${urls%,}
extra=()
if [[ -n ${PUBLISH_NODE:-} ]]; then
  extra=(--publish-url "ws://${addrs[$PUBLISH_NODE]}/ws")
fi

# Node metrics (published, received, received bytes) and Redis's counters, in one file.
snapshot() {
  local out=$1 a
  for a in "${addrs[@]}"; do
    curl -sf "http://$a/metrics" | awk -v a="$a" '/^wsgate_cluster_(published|received|received_bytes|gaps|lost)_total /{print "node", a, $1, $2}'
  done >"$out.tmp"
  if [[ $CLUSTER != 0 ]]; then
    redis-cli -p "$rport" INFO commandstats | tr -d '\r' | sed -n 's/^cmdstat_\([^:]*\):calls=\([0-9]*\).*/cmd \1 \2/p' >>"$out.tmp"
    redis-cli -p "$rport" INFO stats | tr -d '\r' | sed -n 's/^\(total_net_input_bytes\|total_net_output_bytes\):\([0-9]*\)/stat \1 \2/p' >>"$out.tmp"
    redis-cli -p "$rport" INFO cpu | tr -d '\r' | sed -n 's/^\(used_cpu_sys\|used_cpu_user\):\([0-9.]*\)/stat \1 \2/p' >>"$out.tmp"
  fi
  # CPU seconds each node has used (utime + stime of /proc/<pid>/stat).
  for i in "${!node_pids[@]}"; do
    awk -v a="${addrs[$i]}" -v hz="$(getconf CLK_TCK)" '{print "node", a, "cpu_seconds", ($14 + $15) / hz}' "/proc/${node_pids[$i]}/stat"
  done >>"$out.tmp"
  mv "$out.tmp" "$out"
}
published() { awk '$3=="wsgate_cluster_published_total"{s+=$4} END{print s+0}' "$1"; }

# The baseline: the last snapshot before anything was published.
snapshot "$work/before"
# Without Redis there is no publish counter to find the start: the baseline is taken before
# the connections, so the nodes' CPU then includes the connection setup.
sample_until_published() {
  while true; do
    snapshot "$work/sample"
    [[ $(published "$work/sample") == 0 ]] || return 0
    cp "$work/sample" "$work/before"
    sleep 0.1
  done
}
if [[ $CLUSTER != 0 ]]; then
  sample_until_published &
  sampler=$!
fi

echo "loadgen: wsgate-loadgen $* --url <the ws URLs of nodes ${URL_NODES:-0..$((nodes - 1))}>${PUBLISH_NODE:+ --publish-url <node $PUBLISH_NODE>} --jwt-secret s --server-pid <node 0's pid> --quiet --json" >&2
set +e
timeout "$TIME_LIMIT" "$LOADGEN" "$@" --url "$urls" "${extra[@]}" --jwt-secret s --server-pid "$first_pid" \
  --quiet --json >"$work/summary.json"
status=$?
set -e
kill "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true
sampler=
snapshot "$work/after"

python3 - "$work/before" "$work/after" "$work/summary.json" "$nodes" <<'PY'
import json, sys
def load(p):
    d = {}
    for line in open(p):
        f = line.split()
        if f[0] == "node":
            d[("node", f[1], f[2])] = float(f[3])
        else:
            d[(f[0], f[1])] = float(f[2])
    return d
b, a = load(sys.argv[1]), load(sys.argv[2])
delta = {k: a[k] - b.get(k, 0) for k in a}
try:
    s = json.load(open(sys.argv[3]))
except Exception:
    s = None
if s:
    lat = s["latency"]
    line = f"result: deliveries/s {s['deliveries_per_sec']:.0f}"
    if s.get("burst_deliveries_per_sec"):
        br = s["burst_deliveries_per_sec"]
        line += f", burst median {br['median']:.0f} (min {br['min']:.0f}, max {br['max']:.0f}, {br['bursts']} bursts)"
    line += f", latency p50 {lat['p50_us']:.0f} µs p99 {lat['p99_us']:.0f} µs max {lat['max_us']:.0f} µs"
    line += f", published {s['published']} acked {s['acked']} expected {s['expected']} received {s['received']} lost {s['lost']}"
    if s.get("http_latency"):
        line += f", HTTP p99 {s['http_latency']['p99_us']:.0f} µs"
    print(line)
pub = sum(v for (k, *r), v in delta.items() if k == "node" and r[1] == "wsgate_cluster_published_total")
for k in sorted({k[1] for k in delta if k[0] == "node"}):
    get = lambda m: delta.get(("node", k, m), 0)
    print(f"node {k}: CPU {get('cpu_seconds'):.2f} s, published {get('wsgate_cluster_published_total'):.0f}, received {get('wsgate_cluster_received_total'):.0f} events / {get('wsgate_cluster_received_bytes_total'):.0f} bytes from Redis, gaps {get('wsgate_cluster_gaps_total'):.0f}, lost {get('wsgate_cluster_lost_total'):.0f}")
cpu_nodes = sum(v for (k, *r), v in delta.items() if k == "node" and r[1] == "cpu_seconds")
if s and s.get("received"):
    print(f"nodes: CPU {cpu_nodes:.2f} s in all over the run, {cpu_nodes / s['received'] * 1e6:.2f} µs per delivery")
nodes_recv_bytes = sum(v for (k, *r), v in delta.items() if k == "node" and r[1] == "wsgate_cluster_received_bytes_total")
if pub:
    # The script's own INFO calls are left out.
    cmds = {k[1]: v for k, v in delta.items() if k[0] == "cmd" and v and k[1] != "info"}
    total = sum(cmds.values())
    print(f"redis: {pub:.0f} events published; {total:.0f} commands ({total/pub:.2f} per event: "
          + ", ".join(f"{c} {v/pub:.2f}" for c, v in sorted(cmds.items(), key=lambda x: -x[1])) + ")")
    nin, nout = delta.get(("stat", "total_net_input_bytes"), 0), delta.get(("stat", "total_net_output_bytes"), 0)
    print(f"redis: net input {nin:.0f} B ({nin/pub:.1f} per event), net output {nout:.0f} B ({nout/pub:.1f} per event)")
    cpu = delta.get(("stat", "used_cpu_sys"), 0) + delta.get(("stat", "used_cpu_user"), 0)
    print(f"redis: CPU {cpu:.3f} s ({cpu/pub*1e6:.1f} µs per event, INFO cpu)")
    recv = sum(v for (k, *r), v in delta.items() if k == "node" and r[1] == "wsgate_cluster_received_total")
    if recv:
        naive = nodes_recv_bytes / recv * pub * int(sys.argv[4])
        print(f"nodes: {recv:.0f} events, {nodes_recv_bytes:.0f} B received from Redis in all "
              f"({nodes_recv_bytes/pub:.1f} B per published event); a naive broadcast (every node "
              f"every event, {nodes_recv_bytes/recv:.1f} B each) would be {naive:.0f} B: "
              f"{nodes_recv_bytes/naive*100:.1f} % of it received")
PY
exit "$status"
