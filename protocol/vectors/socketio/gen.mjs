// Writes the Socket.IO golden vectors (vectors.json) with the real JavaScript parsers:
// socket.io-parser (the default parser) and socket.io-msgpack-parser (notepack.io).
//
//   npm ci && node gen.mjs > vectors.json
//
// Every vector is encoded by the JS encoders and decoded back by the JS decoders here, so the
// file holds only what the reference implementation writes and reads. Server-side packets are
// built with the keys in the order the Node server (socket.io 4.8) sets them, which is the order
// notepack writes: EVENT {type, data, id?, nsp}, ACK {id, type, data, nsp}, CONNECT
// {type, data, nsp}, CONNECT_ERROR {type, data, nsp}, DISCONNECT {type, nsp}. (The Node server
// also writes `pid: undefined` and `data: undefined` where wsgate omits the key; the client
// reads both the same.)
import assert from "node:assert/strict";
import { Encoder, Decoder } from "socket.io-parser";
import msgpackParser from "socket.io-msgpack-parser";
import notepack from "notepack.io";

const hex = (buf) => Buffer.from(buf).toString("hex");
const PH = (num) => ({ _placeholder: true, num });

/// Replaces placeholders with the buffers they name (what the receiver sees).
function fill(value, buffers) {
  if (Array.isArray(value)) return value.map((v) => fill(v, buffers));
  if (value && typeof value === "object" && !Buffer.isBuffer(value)) {
    if (value._placeholder === true) return buffers[value.num];
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fill(v, buffers)]));
  }
  return value;
}

function decodeDefault(parts) {
  const decoder = new Decoder();
  let out;
  decoder.on("decoded", (p) => (out = p));
  for (const part of parts) decoder.add(part);
  return out;
}

function decodeMsgpack(bytes) {
  const decoder = new msgpackParser.Decoder();
  let out;
  decoder.on("decoded", (p) => (out = p));
  decoder.add(bytes);
  return out;
}

/// One vector. `p`: {type, nsp, id?, data?} as the JS side builds it (placeholders in `data`,
/// `buffers` for them); `extra`: fields that tell the Rust side how to build the packet.
function vector(name, description, origin, p, buffers = [], extra = {}) {
  const data = fill(p.data, buffers);
  // The JS encoder makes an EVENT or ACK with buffers a BINARY_EVENT or BINARY_ACK itself.
  const mpType = p.type === 5 ? 2 : p.type === 6 ? 3 : p.type;
  const jsPacket = { type: mpType, nsp: p.nsp, data, id: p.id };
  if (jsPacket.data === undefined) delete jsPacket.data;
  if (jsPacket.id === undefined) delete jsPacket.id;
  const encoded = new Encoder().encode(jsPacket);
  const [json, ...attachments] = encoded;
  assert.equal(attachments.length, buffers.length, name);
  if (extra.spec !== undefined) assert.equal(json, extra.spec, `${name}: the spec's encoding`);
  assert.equal(Number(json[0]), p.type, name);
  const back = decodeDefault(encoded);
  assert.equal(back.nsp, p.nsp, name);
  assert.equal(back.id, p.id, name);
  assert.deepEqual(back.data, data, name);
  assert.equal(back.type, mpType, name);

  const v = { name, description, origin, type: p.type, nsp: p.nsp };
  if (p.id !== undefined) v.id = p.id;
  if (p.type === 2 || p.type === 5) {
    const [event, ...args] = p.data;
    const sent = extra.offset === undefined ? args : args.slice(0, -1);
    v.event = event;
    v.args_json = JSON.stringify(sent);
    v.wire_args_json = JSON.stringify(args);
    v.args_msgpack_hex = hex(notepack.encode(fill(sent, buffers)));
    v.wire_args_msgpack_hex = hex(notepack.encode(fill(args, buffers)));
  } else if (p.type === 3 || p.type === 6) {
    v.args_json = v.wire_args_json = JSON.stringify(p.data);
    v.args_msgpack_hex = v.wire_args_msgpack_hex = hex(notepack.encode(fill(p.data, buffers)));
  } else if (p.data !== undefined) {
    v.data_json = JSON.stringify(p.data);
    v.data_msgpack_hex = hex(notepack.encode(p.data));
  }
  Object.assign(v, extra);
  v.json = json;
  v.attachments_hex = attachments.map(hex);

  // The msgpack parser: no binary packet types, binary values stay in the map.
  const order =
    origin === "client"
      ? ["type", "data", "options", "id", "nsp"]
      : mpType === 3
        ? ["id", "type", "data", "nsp"]
        : ["type", "data", "id", "nsp"];
  const mp = {};
  for (const key of order) {
    const value = { type: mpType, data, id: p.id, nsp: p.nsp, options: extra.options }[key];
    if (value !== undefined || (key === "data" && extra.undefined_data)) mp[key] = value;
  }
  const [bytes] = new msgpackParser.Encoder().encode(mp);
  const mpBack = decodeMsgpack(bytes);
  assert.equal(mpBack.type, mpType, name);
  assert.deepEqual(mpBack.data, data, name);
  v.msgpack_hex = hex(bytes);
  return v;
}

const sid = "wZX3oN0bSVIhsaknAAAI";
const vectors = [
  // The v5 spec's table (socket.io-protocol Readme, "Packet encoding"), verbatim.
  vector("spec-connect-main", "CONNECT to the main namespace", "client", { type: 0, nsp: "/" }, [], { spec: "0" }),
  vector("spec-connect-answer", "the server's CONNECT answer", "server", { type: 0, nsp: "/", data: { sid } }, [], { spec: `0{"sid":"${sid}"}`, sid }),
  vector("spec-connect-admin", "CONNECT to /admin", "client", { type: 0, nsp: "/admin" }, [], { spec: "0/admin," }),
  vector("spec-connect-admin-answer", "the answer in /admin", "server", { type: 0, nsp: "/admin", data: { sid: "oSO0OpakMV_3jnilAAAA" } }, [], { spec: '0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}', sid: "oSO0OpakMV_3jnilAAAA" }),
  vector("spec-connect-error", "CONNECT refused", "server", { type: 4, nsp: "/", data: { message: "Not authorized" } }, [], { spec: '4{"message":"Not authorized"}', message: "Not authorized" }),
  vector("spec-event", "EVENT", "server", { type: 2, nsp: "/", data: ["foo"] }, [], { spec: '2["foo"]' }),
  vector("spec-event-admin", "EVENT in /admin", "server", { type: 2, nsp: "/admin", data: ["bar"] }, [], { spec: '2/admin,["bar"]' }),
  vector("spec-binary-event", "BINARY_EVENT with one attachment", "server", { type: 5, nsp: "/", data: ["baz", PH(0)] }, [Buffer.from([1, 2, 3, 4])], { spec: '51-["baz",{"_placeholder":true,"num":0}]' }),
  vector("spec-binary-event-admin", "BINARY_EVENT with two attachments in /admin", "server", { type: 5, nsp: "/admin", data: ["baz", PH(0), PH(1)] }, [Buffer.from([1, 2]), Buffer.from([3, 4])], { spec: '52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]' }),
  vector("spec-event-ack-id", "EVENT with an ack id", "server", { type: 2, nsp: "/", data: ["foo"], id: 12 }, [], { spec: '212["foo"]' }),
  vector("spec-ack-empty", "ACK with no arguments", "server", { type: 3, nsp: "/", data: [], id: 12 }, [], { spec: "312[]" }),
  vector("spec-event-admin-ack-id", "EVENT with an ack id in /admin", "server", { type: 2, nsp: "/admin", data: ["foo"], id: 13 }, [], { spec: '2/admin,13["foo"]' }),
  vector("spec-ack-admin", "ACK in /admin", "server", { type: 3, nsp: "/admin", data: ["bar"], id: 13 }, [], { spec: '3/admin,13["bar"]' }),
  vector("spec-binary-event-ack-id", "BINARY_EVENT with an ack id", "server", { type: 5, nsp: "/", data: ["foo", PH(0)], id: 14 }, [Buffer.from([1, 2, 3, 4])], { spec: '51-14["foo",{"_placeholder":true,"num":0}]' }),
  vector("spec-ack", "ACK", "server", { type: 3, nsp: "/", data: ["bar"], id: 14 }, [], { spec: '314["bar"]' }),
  vector("spec-event-ack-id-15", "EVENT with an ack id", "server", { type: 2, nsp: "/", data: ["foo"], id: 15 }, [], { spec: '215["foo"]' }),
  vector("spec-binary-ack", "BINARY_ACK", "server", { type: 6, nsp: "/", data: ["bar", PH(0)], id: 15 }, [Buffer.from([1, 2, 3, 4])], { spec: '61-15["bar",{"_placeholder":true,"num":0}]' }),
  vector("spec-disconnect", "DISCONNECT", "server", { type: 1, nsp: "/" }, [], { spec: "1" }),
  vector("spec-disconnect-admin", "DISCONNECT from /admin", "server", { type: 1, nsp: "/admin" }, [], { spec: "1/admin," }),
  // The spec's sample session: `461-/admin,1[{"_placeholder":true,"num":0}]` less the Engine.IO `4`.
  vector("spec-session-connect-admin", "the sample session's CONNECT answer in /admin", "server", { type: 0, nsp: "/admin", data: { sid: "-G5j-67EZFp-q59rADQM" } }, [], { spec: '0/admin,{"sid":"-G5j-67EZFp-q59rADQM"}', sid: "-G5j-67EZFp-q59rADQM" }),
  vector("spec-session-event-ack-id", "the sample session's EVENT with an ack id", "client", { type: 2, nsp: "/admin", data: ["tellme"], id: 1 }, [], { spec: '2/admin,1["tellme"]', options: { compress: true } }),
  vector("spec-session-hey", "the sample session's server emit", "server", { type: 2, nsp: "/", data: ["hey", "Jude"] }, [], { spec: '2["hey","Jude"]' }),
  vector("spec-session-binary-ack", "the sample session's BINARY_ACK", "server", { type: 6, nsp: "/admin", data: [PH(0)], id: 1 }, [Buffer.from([0xde, 0xad])], { spec: '61-/admin,1[{"_placeholder":true,"num":0}]' }),

  // What wsgate sends.
  vector("event-data", "a wsgate event: one data argument", "server", { type: 2, nsp: "/notifications", data: ["notification", { id: 7, title: "Hi", read: false, tags: ["a", "b"], score: -1.5 }] }),
  vector("event-recovery-offset", "connection state recovery: the offset as the last argument", "server", { type: 2, nsp: "/chat", data: ["chat:message", { content: "hi", roomId: "r1" }, "9f2c41aa07be13d5-42"] }, [], { offset: "9f2c41aa07be13d5-42" }),
  vector("event-escapes", "an event name and data that need escaping", "server", { type: 2, nsp: "/", data: ['q"b\\s/\n\r\t\b\f\u0000\u001f\u007f', "line\u2028sep"] }),
  vector("event-unicode", "unicode in the namespace, the name and the data", "server", { type: 2, nsp: "/ünï", data: ["通知", { text: "héllo 🎉", snow: "☃" }] }),
  vector("event-many-args", "several arguments of every JSON type", "server", { type: 2, nsp: "/", data: ["message-back", 1, "2", { 3: [true] }, null, -200, 4294967296, 0.25, [], {}] }),
  vector("event-large-id", "the largest id a JS client can hold (2^53-1)", "server", { type: 2, nsp: "/", data: ["ping"], id: 9007199254740991 }),
  vector("event-long-strings", "str 8 and str 16 lengths", "server", { type: 2, nsp: "/", data: ["e".repeat(40), "x".repeat(300)] }),
  vector("ack-reply", "an ack carrying a native reply", "server", { type: 3, nsp: "/chat", data: [{ type: "reply", id: 3, offset: 57 }], id: 3 }),
  vector("ack-error-first", "a Node-style ack: error, then result", "server", { type: 3, nsp: "/", data: [null, { ok: true }], id: 0 }),
  vector("connect-answer-pid", "the CONNECT answer with connection state recovery", "server", { type: 0, nsp: "/chat", data: { sid: "oSO0OpakMV_3jnilAAAA", pid: "p-1f3a" } }, [], { sid: "oSO0OpakMV_3jnilAAAA", pid: "p-1f3a" }),
  vector("connect-error-data", "a refused token: message and data", "server", { type: 4, nsp: "/notifications", data: { message: "invalid token", data: { code: "auth.invalid" } } }, [], { message: "invalid token", error_data_json: '{"code":"auth.invalid"}' }),
  vector("connect-error-namespace", "an unknown namespace", "server", { type: 4, nsp: "/random", data: { message: "Invalid namespace" } }, [], { message: "Invalid namespace" }),

  // What socket.io-client sends (msgpack maps as the client builds them, with `options`).
  vector("client-connect-auth", "CONNECT with auth", "client", { type: 0, nsp: "/notifications", data: { token: "eyJhbGciOiJIUzI1NiJ9.e30.c2ln" } }),
  vector("client-connect-no-auth", "CONNECT without auth: msgpack writes data: undefined", "client", { type: 0, nsp: "/" }, [], { undefined_data: true }),
  vector("client-connect-recovery", "a reconnect with pid and offset", "client", { type: 0, nsp: "/chat", data: { pid: "p-1f3a", offset: "9f2c41aa07be13d5-42", token: "t" } }),
  vector("client-event", "an emit with an ack callback", "client", { type: 2, nsp: "/chat", data: ["chat:message", { content: "hi", roomId: "r1" }], id: 5 }, [], { options: { compress: true } }),
  vector("client-event-no-args", "an emit with no arguments", "client", { type: 2, nsp: "/", data: ["status:typing"] }, [], { options: { compress: true } }),
  vector("client-binary-event", "an emit with two buffers", "client", { type: 5, nsp: "/", data: ["upload", PH(0), { nested: PH(1) }] }, [Buffer.from([1, 2, 3]), Buffer.alloc(300, 7)], { options: { compress: true } }),
  vector("client-ack", "an ack from the client", "client", { type: 3, nsp: "/", data: ["ok", 1], id: 7 }),
  vector("client-binary-ack", "a binary ack from the client", "client", { type: 6, nsp: "/chat", data: [PH(0)], id: 8 }, [Buffer.from([0xff])]),
  vector("client-disconnect", "DISCONNECT from /chat", "client", { type: 1, nsp: "/chat" }),
];

// Messages the JS decoders refuse, with the code wsgate gives.
function refusedDefault(name, parts, code) {
  assert.throws(() => decodeDefault(parts), `${name}: socket.io-parser accepts it`);
  const [input, ...attachments] = parts;
  return { name, format: "json", input, attachments_hex: attachments.map(hex), code };
}
function refusedMsgpack(name, value, code) {
  const bytes = Buffer.isBuffer(value) ? value : notepack.encode(value);
  assert.throws(() => decodeMsgpack(bytes), `${name}: socket.io-msgpack-parser accepts it`);
  return { name, format: "msgpack", input_hex: hex(bytes), code };
}
const invalid = [
  refusedDefault("type-7", ["7"], "sio.bad_type"),
  refusedDefault("type-letter", ["x[1]"], "sio.bad_type"),
  refusedDefault("attachments-missing", ['5-["a"]'], "sio.bad_attachments"),
  refusedDefault("attachments-zero", ['50-["a"]'], "sio.bad_attachments"),
  refusedDefault("attachments-not-digits", ['5a-["a"]'], "sio.bad_attachments"),
  refusedDefault("attachments-no-dash", ['51["a"]'], "sio.bad_attachments"),
  refusedDefault("attachments-too-many", ['511-["a"]'], "sio.too_many_attachments"),
  refusedDefault("json-malformed", ["2abc"], "sio.bad_json"),
  refusedDefault("json-truncated", ['2/admin,["a"'], "sio.bad_json"),
  refusedDefault("event-object", ['2{"a":1}'], "sio.bad_event"),
  refusedDefault("event-empty-array", ["2[]"], "sio.bad_event"),
  refusedDefault("event-name-object", ["2[{}]"], "sio.bad_event"),
  refusedDefault("event-reserved", ['2["connect"]'], "sio.reserved_event"),
  refusedDefault("event-reserved-disconnecting", ['2/chat,["disconnecting",1]'], "sio.reserved_event"),
  refusedDefault("ack-object", ["31{}"], "sio.bad_ack"),
  refusedDefault("connect-array", ["0[]"], "sio.bad_connect"),
  refusedDefault("connect-string", ['0"token"'], "sio.bad_connect"),
  refusedDefault("disconnect-data", ["1{}"], "sio.unexpected_data"),
  refusedDefault("connect-error-array", ["4[1]"], "sio.bad_connect_error"),
  refusedDefault("placeholder-out-of-range", ['51-["a",{"_placeholder":true,"num":1}]', Buffer.from([1])], "sio.bad_placeholder"),
  refusedDefault("placeholder-negative", ['51-["a",{"_placeholder":true,"num":-1}]', Buffer.from([1])], "sio.bad_placeholder"),
  refusedMsgpack("msgpack-not-a-map", [2, "/"], "sio.bad_msgpack"),
  refusedMsgpack("msgpack-truncated", Buffer.from("83a474797065", "hex"), "sio.bad_msgpack"),
  refusedMsgpack("msgpack-type-binary-event", { type: 5, data: ["a"], nsp: "/" }, "sio.bad_type"),
  refusedMsgpack("msgpack-type-string", { type: "2", data: ["a"], nsp: "/" }, "sio.bad_type"),
  refusedMsgpack("msgpack-no-nsp", { type: 2, data: ["a"] }, "sio.bad_namespace"),
  refusedMsgpack("msgpack-nsp-number", { type: 2, data: ["a"], nsp: 1 }, "sio.bad_namespace"),
  refusedMsgpack("msgpack-event-object", { type: 2, data: { a: 1 }, nsp: "/" }, "sio.bad_event"),
  refusedMsgpack("msgpack-ack-object", { type: 3, data: {}, id: 1, nsp: "/" }, "sio.bad_ack"),
  refusedMsgpack("msgpack-id-string", { type: 2, data: ["a"], id: "1", nsp: "/" }, "sio.bad_id"),
  refusedMsgpack("msgpack-id-float", { type: 2, data: ["a"], id: 1.5, nsp: "/" }, "sio.bad_id"),
  refusedMsgpack("msgpack-disconnect-data", { type: 1, data: [1], nsp: "/" }, "sio.unexpected_data"),
  refusedMsgpack("msgpack-connect-array", { type: 0, data: [1], nsp: "/" }, "sio.bad_connect"),
  refusedMsgpack("msgpack-connect-error-number", { type: 4, data: 1, nsp: "/" }, "sio.bad_connect_error"),
];

process.stdout.write(JSON.stringify({ vectors, invalid }, null, 1) + "\n");
