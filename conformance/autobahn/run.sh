#!/usr/bin/env bash
# Autobahn|Testsuite's fuzzing client (cases 1 to 10; 12 and 13 are permessage-deflate, which
# wsgate does not negotiate) against the real server's /echo. Fails unless every case's
# behaviour and close behaviour are OK, NON-STRICT or INFORMATIONAL.
#
#   conformance/autobahn/run.sh [--release]
#
# Needs Python 3 and pyenv's Python 2.7.18 (wstest runs on Python 2 only); installs wstest and
# its pinned dependencies (requirements.txt) into target/autobahn-venv once. The server is the
# debug build unless --release: the run takes as long either way (the Python client is the
# bottleneck), and CI has built the debug binary already. Report: target/autobahn/reports/.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=conformance/autobahn

profile=debug
case "${1:-}" in
  "") ;;
  --release) profile=release ;;
  *) echo "usage: $0 [--release]" >&2; exit 2 ;;
esac

started=$(date +%s)
work=target/autobahn
venv=target/autobahn-venv
wstest_version=25.10.1
mkdir -p "$work"

# wstest in a Python 2.7 virtualenv: virtualenv < 20.22 is the last that makes Python 2 ones; it
# runs from a Python 3 bootstrap venv. Reinstalled only when missing or of another version.
if ! "$venv/bin/wstest" -a 2>/dev/null | grep -q "AutobahnTestSuite $wstest_version"; then
  echo "== installing wstest $wstest_version into $venv"
  py27=${AUTOBAHN_PYTHON27:-}
  if [ -z "$py27" ]; then
    py27="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")/versions/2.7.18/bin/python"
  fi
  if [ -z "$py27" ] || [ ! -x "$py27" ]; then
    echo "Python 2.7.18 not found (pyenv install 2.7.18, or set AUTOBAHN_PYTHON27)" >&2
    exit 1
  fi
  rm -rf "$venv" "$work/bootstrap-venv"
  python3 -m venv "$work/bootstrap-venv"
  timeout 300 "$work/bootstrap-venv/bin/python" -m pip install --quiet \
    --disable-pip-version-check 'virtualenv==20.21.1'
  "$work/bootstrap-venv/bin/virtualenv" --quiet -p "$py27" "$venv"
  timeout 600 "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --no-python-version-warning -r "$here/requirements.txt"
  "$venv/bin/wstest" -a | grep -q "AutobahnTestSuite $wstest_version"
fi

if [ "$profile" = release ]; then
  cargo build --locked --release -p wsgate
else
  cargo build --locked -p wsgate
fi

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# Waits for the server (port, pid) to answer /healthz: 0; 1 if it exits first (the port was
# taken between picking and binding it: try another); 2 if it never answers.
wait_ready() {
  python3 - "$1" "$2" <<'PY'
import os, sys, time, urllib.request
port, pid = sys.argv[1], int(sys.argv[2])
for _ in range(300):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
        sys.exit(0)
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            sys.exit(1)
        time.sleep(0.1)
sys.exit(2)
PY
}

server=
trap 'if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi' EXIT
for attempt in 1 2 3 4 5; do
  port=$(free_port)
  # Limits high enough for 9.x (messages up to 16 MiB, echoed whole); the rest are defaults.
  RUST_LOG=warn "target/$profile/wsgate" --host 127.0.0.1 --port "$port" --echo --store memory \
    --jwt-secret autobahn --api-keys autobahn-unused \
    --max-message-bytes 67108864 --max-outbound-bytes 268435456 >"$work/server.log" 2>&1 &
  server=$!
  ready=0
  wait_ready "$port" "$server" || ready=$?
  [ "$ready" = 0 ] && break
  wait "$server" 2>/dev/null || true
  server=
  if [ "$ready" = 2 ] || [ "$attempt" = 5 ]; then
    echo "the server did not start; its log:" >&2
    cat "$work/server.log" >&2
    exit 1
  fi
done

rm -rf "$work/reports"
python3 - "$here/fuzzingclient.json" "$work/fuzzingclient.json" "$port" <<'PY'
import json, sys
spec = json.load(open(sys.argv[1]))
for server in spec["servers"]:
    server["url"] = server["url"].replace("PORT", sys.argv[3])
json.dump(spec, open(sys.argv[2], "w"), indent=2)
PY

echo "== wstest -m fuzzingclient (cases 1-10) against ws://127.0.0.1:$port/echo ($profile build)"
# wstest exits 0 whatever the results (the report is the verdict), and non-zero only when it
# cannot run; it is bounded here in case a case hangs.
wstest="$PWD/$venv/bin/wstest"
if ! (cd "$work" && timeout 600 "$wstest" -m fuzzingclient -s fuzzingclient.json >wstest.log 2>&1); then
  echo "wstest did not complete; its log:" >&2
  tail -n 30 "$work/wstest.log" >&2
  exit 1
fi
if ! kill -0 "$server" 2>/dev/null; then
  echo "the server died during the run; its log:" >&2
  tail -n 50 "$work/server.log" >&2
  exit 1
fi
# 301 cases in 1-10 with wstest 25.10.1: fewer means some did not run.
if ! python3 "$here/check_report.py" "$work/reports" --min-cases 301; then
  echo "server log: $work/server.log; report: $work/reports/index.html" >&2
  exit 1
fi
echo "autobahn: took $(($(date +%s) - started)) s"
