#!/usr/bin/env bash
# The Socket.IO protocol's own test suite (test-suite/test-suite.js of the socket.io-protocol
# repository, v5) against the real server in its conformance mode, under mocha.
#
#   conformance/socketio/run.sh <path/to/test-suite.js>
#
# The suite is not kept in this repository (it is another project's code): give the path of a
# copy. It expects its reference server at a fixed URL (http://localhost:3000) with path
# /socket.io/, pingInterval 300 ms, pingTimeout 200 ms, maxPayload 1000000 and connectTimeout
# 1 s, namespaces / and /custom and its handlers (the auth event, message-back,
# message-with-ack): SOCKETIO_CONFORMANCE=true is that server (src/socketio/conformance.rs).
# conformance/suite.sh starts the debug build so configured on a free port and runs a copy of
# the suite with its URL set, its WebSocket dispatching one message per task as a browser does
# (the suite awaits one message at a time: docs/socketio.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
source conformance/suite.sh
run_suite "${1:?usage: $0 <path/to/test-suite.js>}" browser SOCKETIO_CONFORMANCE=true \
  ENGINEIO_PATH=/socket.io/ ENGINEIO_PING_INTERVAL=300ms ENGINEIO_PING_TIMEOUT=200ms \
  ENGINEIO_MAX_PAYLOAD=1000000
