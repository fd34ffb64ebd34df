#!/usr/bin/env bash
# The Engine.IO protocol's own test suite (test-suite/test-suite.js of the engine.io-protocol
# repository, v4) against the real server's Engine.IO echo, under mocha.
#
#   conformance/engineio/run.sh <path/to/test-suite.js>
#
# The suite is not kept in this repository (it is another project's code): give the path of a
# copy. It expects the reference server at a fixed URL (http://localhost:3000) with path
# /engine.io/, pingInterval 300 ms, pingTimeout 200 ms and maxPayload 1000000; this script
# starts the debug build so configured on a free port, runs a copy of the suite whose URL
# constant names that port, and gives it the globals its Node.js preamble imports
# (./node-imports.js: chai with chai-string, and the ws package's WebSocket; fetch is Node's).
# Needs Node.js 18+; installs tests/js (npm ci) when missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
suite=${1:?usage: $0 <path/to/test-suite.js>}
[ -f "$suite" ] || { echo "no such file: $suite" >&2; exit 2; }

[ -f tests/js/node_modules/.package-lock.json ] || npm ci --no-audit --no-fund --prefix tests/js
cargo build --locked -p wsgate

work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ECHO=true SOCKETIO=false PORT=$port HOST=127.0.0.1 STORE=memory JWT_SECRET=conformance RUST_LOG=warn \
  ENGINEIO_PATH=/engine.io/ ENGINEIO_PING_INTERVAL=300ms ENGINEIO_PING_TIMEOUT=200ms \
  ENGINEIO_MAX_PAYLOAD=1000000 target/debug/wsgate >"$work/server.log" 2>&1 &
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
js=$PWD/tests/js
cat >"$work/node-imports.js" <<JS
import { createRequire } from "node:module";
const require = createRequire("$js/package.json");
const chai = require("chai");
chai.use(require("chai-string"));
globalThis.chai = chai;
globalThis.WebSocket = require("ws");
JS
"$js/node_modules/.bin/mocha" --timeout 10000 "$work/test-suite.js"
