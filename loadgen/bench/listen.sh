# Sourced by run.sh and soak.sh: waits (at most 5 s) for a wsgate started with `--port 0` to log
# "wsgate listening addr=127.0.0.1:37557 shards=2" (with or without the ANSI colours of the
# tracing output) and prints the address.
#
#   addr=$(wait_listen_addr <server log> <server pid>) || exit 1
#
# On failure it says why on stderr (the server exited, or RUST_LOG hid the line), shows the
# server's output, and returns 1.
wait_listen_addr() {
  local log=$1 pid=$2 addr=
  local find='/wsgate listening/{s/.*[[:space:]]addr=\([^[:space:]]*\).*/\1/p;q}'
  for _ in $(seq 50); do
    addr=$(sed -n -e 's/\x1b\[[0-9;]*m//g' -e "$find" "$log")
    [[ -n $addr ]] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  [[ -n $addr ]] || addr=$(sed -n -e 's/\x1b\[[0-9;]*m//g' -e "$find" "$log")
  if [[ $addr =~ ^127\.0\.0\.1:[1-9][0-9]*$ ]]; then
    echo "$addr"
    return 0
  fi
  if kill -0 "$pid" 2>/dev/null; then
    echo "no \"wsgate listening addr=127.0.0.1:<port>\" line from the server within 5 s (got" \
      "'$addr'; RUST_LOG must let wsgate::server log at info). Its output:" >&2
  else
    echo "the server exited before it logged its listening address. Its output:" >&2
  fi
  sed 's/^/  /' "$log" >&2
  return 1
}
