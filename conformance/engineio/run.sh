#!/usr/bin/env bash
# The Engine.IO protocol's own test suite (test-suite/test-suite.js of the engine.io-protocol
# repository, v4) against the real server's Engine.IO echo, under mocha.
#
#   conformance/engineio/run.sh <path/to/test-suite.js>
#
# The suite is not kept in this repository (it is another project's code): give the path of a
# copy. It expects the reference server at a fixed URL (http://localhost:3000) with path
# /engine.io/, pingInterval 300 ms, pingTimeout 200 ms and maxPayload 1000000;
# conformance/suite.sh starts the debug build so configured on a free port and runs a copy of
# the suite with its URL set.
set -euo pipefail
cd "$(dirname "$0")/../.."
source conformance/suite.sh
run_suite "${1:?usage: $0 <path/to/test-suite.js>}" ws ECHO=true SOCKETIO=false \
  ENGINEIO_PATH=/engine.io/ ENGINEIO_PING_INTERVAL=300ms ENGINEIO_PING_TIMEOUT=200ms \
  ENGINEIO_MAX_PAYLOAD=1000000
