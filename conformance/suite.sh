# Shared by conformance/engineio/run.sh and conformance/socketio/run.sh (sourced, from the
# repository's root): runs a copy of one of the Socket.IO project's protocol test suites
# (test-suite/test-suite.js, under mocha) against the debug build.
#
#   run_suite <path/to/test-suite.js> <ws|browser> VAR=value...
#
# Starts target/debug/wsgate on a free port with the given environment, runs a copy of the
# suite whose URL constant (http://localhost:3000) names that port, and gives it the globals
# its Node.js preamble imports (./node-imports.js: chai with chai-string, and the ws package's
# WebSocket, as it is (`ws`) or dispatching one message per task as a browser does
# (`browser`); fetch is Node's). Needs Node.js 18+; installs tests/js (npm ci) when missing.
run_suite() {
  local suite=$1 dispatch=$2
  shift 2
  [ -f "$suite" ] || { echo "no such file: $suite" >&2; exit 2; }
  [ -f tests/js/node_modules/.package-lock.json ] || npm ci --no-audit --no-fund --prefix tests/js
  cargo build --locked -p wsgate

  work=$(mktemp -d)
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  env "$@" PORT="$port" HOST=127.0.0.1 STORE=memory JWT_SECRET=conformance RUST_LOG=warn \
    target/debug/wsgate >"$work/server.log" 2>&1 &
  server=$!
  trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
  python3 - "$port" <<'PY'
import sys, time, urllib.request
for _ in range(300):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/healthz", timeout=1).read()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit("the server did not answer /healthz within 30 s")
PY

  sed "s|^const URL = \"http://localhost:3000\";|const URL = \"http://127.0.0.1:$port\";|" "$suite" \
    >"$work/test-suite.js"
  grep -q "127.0.0.1:$port" "$work/test-suite.js" || { echo "the suite's URL constant was not found" >&2; exit 1; }
  local js=$PWD/tests/js
  # A browser dispatches each message in a task of its own, so a suite's awaits between two
  # waitFor calls run before the next message; ws emits the messages of one read in a row
  # unless told not to, and the second of two frames that came together would be missed.
  local sync=true
  [ "$dispatch" = browser ] && sync=false
  cat >"$work/node-imports.js" <<JS
import { createRequire } from "node:module";
const require = createRequire("$js/package.json");
const chai = require("chai");
chai.use(require("chai-string"));
globalThis.chai = chai;
const WS = require("ws");
globalThis.WebSocket = class extends WS {
  constructor(url, protocols, options) {
    super(url, protocols, { allowSynchronousEvents: $sync, ...options });
  }
};
JS
  "$js/node_modules/.bin/mocha" --timeout 10000 "$work/test-suite.js"
}
