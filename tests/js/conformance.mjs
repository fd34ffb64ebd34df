// Drives wsgate's Socket.IO conformance mode (SOCKETIO_CONFORMANCE=true: the Socket.IO protocol
// suite's reference server) with the real socket.io-client (v4) and prints one JSON line of
// what happened; tests/socketio_conformance.rs asserts on it.
//
//   node conformance.mjs <http-url> <scenario> <json-args>
//
// json-args: {"transports": ["polling","websocket"], "parser": "json"|"msgpack", "path": "/socket.io/"}
//
// Scenarios:
//   reference   the reference server's behaviours: the auth event with the CONNECT payload
//               (or {}) on / and /custom, an unknown namespace refused, message answered with
//               message-back and message-with-ack acked with its arguments, binary included
//   timeout     an Engine.IO connection that connects no namespace: closed after connectTimeout
import { io, Manager } from "socket.io-client";
import msgpackParser from "socket.io-msgpack-parser";
import { done, fail, deadline, next } from "./verdict.mjs";

const [url, scenario, rawArgs = "{}"] = process.argv.slice(2);
const args = JSON.parse(rawArgs);
const opts = {
  transports: args.transports ?? ["polling", "websocket"],
  path: args.path ?? "/socket.io/",
  reconnection: false,
  ...(args.parser === "msgpack" ? { parser: msgpackParser } : {}),
};

deadline(scenario, 20000);

/** Binary values as {"bytes": [...]}, so that they survive JSON. */
function plain(value) {
  if (value instanceof ArrayBuffer) return { bytes: [...new Uint8Array(value)] };
  if (ArrayBuffer.isView(value)) return { bytes: [...new Uint8Array(value.buffer, value.byteOffset, value.byteLength)] };
  if (Array.isArray(value)) return value.map(plain);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  }
  return value;
}

/** Connects to `nsp`; resolves with the auth event's payload, or the connect_error. */
function connect(manager, nsp, auth) {
  const socket = manager.socket(nsp, auth === undefined ? {} : { auth });
  return new Promise((resolve) => {
    socket.once("auth", (payload) => resolve({ socket, auth: payload }));
    socket.once("connect_error", (e) => resolve({ socket, error: e.message }));
  });
}

function acked(socket, event, ...values) {
  return new Promise((resolve) => socket.emit(event, ...values, (...a) => resolve(a)));
}

async function reference() {
  const manager = new Manager(url, opts);
  const main = await connect(manager, "/", { token: "123" });
  const custom = await connect(manager, "/custom");
  const random = await connect(manager, "/random");
  const s = main.socket;
  const back = next(s, "message-back");
  s.emit("message", 1, "2", { 3: [true] });
  const messageBack = await back;
  const binBack = next(s, "message-back");
  s.emit("message", Uint8Array.from([1, 2, 3]), { nested: Uint8Array.from([4, 5, 6]) });
  const binaryBack = await binBack;
  const ack = await acked(s, "message-with-ack", 1, "2", { 3: [false] });
  const binaryAck = await acked(s, "message-with-ack", Uint8Array.from([7, 8]), "x");
  // /custom has no handlers: nothing comes back there.
  let customHeard = false;
  custom.socket.on("message-back", () => {
    customHeard = true;
  });
  custom.socket.emit("message", "to custom");
  await new Promise((r) => setTimeout(r, 200));
  const transport = manager.engine.transport.name;
  manager.engine.close();
  done({
    ok: true,
    transport,
    mainAuth: main.auth,
    customAuth: custom.auth,
    randomError: random.error ?? null,
    messageBack,
    binaryBack: plain(binaryBack),
    ack,
    binaryAck: plain(binaryAck),
    customHeard,
  });
}

async function timeout() {
  // A manager opens the Engine.IO connection; with no socket, no CONNECT is ever sent.
  const manager = new Manager(url, { ...opts, autoConnect: false });
  const started = Date.now();
  await new Promise((resolve, reject) => manager.open((e) => (e ? reject(e) : resolve())));
  const [reason] = await next(manager, "close");
  done({ ok: true, afterMs: Date.now() - started, reason });
}

const scenarios = { reference, timeout };
const run = scenarios[scenario];
if (!run) fail(`unknown scenario ${scenario}`);
run().catch((e) => fail(String(e && e.stack ? e.stack : e)));
