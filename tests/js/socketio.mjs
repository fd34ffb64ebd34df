// Drives wsgate's Socket.IO layer with the real socket.io-client (v4) and prints one JSON line
// of what happened; tests/socketio.rs asserts on it.
//
//   node socketio.mjs <http-url> <scenario> <json-args>
//
// json-args: {"tokens": {...}, "transports": ["polling","websocket"], "parser": "json"|"msgpack",
//             "path": "/socket.io/", "apiKey": "...", ...}
//
// Scenarios:
//   chat        alice and bob connect, join a room with wsgate:join (ack), alice publishes and
//               bob receives; bob sends alice a private message; a REST push reaches bob; an
//               unknown event is answered on its ack and, without one, on the error event
//   refused     a bad token and a missing one: connect_error with wsgate's code
//   namespaces  two namespaces on one connection, each a socket; an unknown one refused
//   binary      alice publishes Buffers in an object to a room (wsgate:publish), bob receives
//               them as Buffers; the native clients of the room answer with `bin` (native
//               MessagePack, "fromNative"), which alice and bob receive as Buffers; then
//               alice's wsgate:history of the room, whose ack carries the stored binaries
//   seed004     seed 004's client code against examples/seed-004.toml
//   seed001     seed 001's client code against examples/seed-001.toml
//   privateAcks REST pushes to a user whose sockets are asked for acks (SOCKETIO_PRIVATE_ACKS):
//               what a handler acked does not come again, what it did not ack does
//   acksBound   a socket that never acks ten pushes (USER_STREAM_SIZE=4), then acks them all
//   recovery    a steady publish while the subscriber's connection is cut twice: each time
//               it reconnects with its pid and offset (`recovered`, the same id)
//   idle        a quiet socket past the native heartbeat, alive on Engine.IO's
//   (tests/cluster_socketio.rs drives cluster.mjs, the same client over several nodes)
//   roundRobin  cluster mode behind a round-robin TCP balancer (the url; args.nodes: each
//               node's own url): alice long-polls only and carol upgrades to WebSocket (default
//               transports), every request on a new connection (an agent without keep-alive), so
//               on changing nodes; bob, on a node directly over WebSocket, publishes to their
//               room and a REST push to each comes from another node: all of it arrives, before
//               and after carol's upgrade
import http from "node:http";
import { io, Manager } from "socket.io-client";
import msgpackParser from "socket.io-msgpack-parser";
import { done, fail, deadline, next } from "./verdict.mjs";
import { cutAndRecover } from "./recovery.mjs";

const [url, scenario, rawArgs = "{}"] = process.argv.slice(2);
const args = JSON.parse(rawArgs);
const transports = args.transports ?? ["polling", "websocket"];
const path = args.path ?? "/socket.io/";
const parser = args.parser === "msgpack" ? msgpackParser : undefined;

deadline(scenario, 20000);

function connect(nsp, token, extra = {}) {
  const opts = { transports, path, forceNew: true, reconnection: false, ...extra };
  if (parser) opts.parser = parser;
  if (token !== undefined) opts.auth = { token };
  return io(url + nsp, opts);
}

function connected(socket) {
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (e) => reject(new Error(`connect_error: ${e.message}`)));
  });
}

function refused(socket) {
  return new Promise((resolve) => {
    socket.once("connect", () => resolve({ connected: true }));
    socket.once("connect_error", (e) => resolve({ message: e.message, data: e.data ?? null }));
  });
}

// Disconnects `sockets` and reports `result` with the transport the first one ended on.
function leave(sockets, result) {
  const transport = sockets[0].io.engine.transport.name;
  sockets.forEach((s) => s.disconnect());
  done({ ok: true, transport, ...result });
}

function ack(socket, event, arg) {
  return socket.timeout(5000).emitWithAck(event, arg);
}

async function chat() {
  const alice = await connected(connect("/", args.tokens.alice));
  const bob = await connected(connect("/", args.tokens.bob));
  const joinA = await ack(alice, "wsgate:join", { room: "lobby" });
  const joinB = await ack(bob, "wsgate:join", { room: "lobby" });
  const chatAtBob = next(bob, "chat");
  const published = await ack(alice, "wsgate:publish", {
    room: "lobby",
    event: "chat",
    data: { text: "hi ✓", n: 1 },
  });
  const [chatData] = await chatAtBob;
  const dmAtAlice = next(alice, "dm");
  const names = args.names ?? { alice: "alice", bob: "bob" };
  const sent = await ack(bob, "wsgate:send", { to: names.alice, event: "dm", data: [1, 2, 3] });
  const [dmData] = await dmAtAlice;
  const pushAtBob = next(bob, "notification");
  const rest = await fetch(`${url}/api/v1/push/users`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${args.apiKey}` },
    body: JSON.stringify({ userId: names.bob, event: "notification", data: { kind: "rest" } }),
  }).then((r) => r.json());
  const [pushData, pushCallback] = await pushAtBob;
  const unknownAck = await ack(alice, "no:such:event", { x: 1 });
  const errorEvent = next(alice, "error");
  alice.emit("no:such:event", { x: 2 });
  const [errorData] = await errorEvent;
  const badAck = await ack(alice, "wsgate:join", "not-an-object");
  leave([alice, bob], {
    joinA,
    joinB,
    published,
    chatData,
    sent,
    dmData,
    rest,
    pushData,
    pushAsksForAck: typeof pushCallback === "function",
    unknownAck,
    errorData,
    badAck,
  });
}

async function refusedScenario() {
  const bad = await refused(connect("/", "not.a.jwt"));
  const none = await refused(connect("/", undefined));
  const unknownNsp = await refused(connect("/nope", args.tokens.alice));
  done({ ok: true, bad, none, unknownNsp });
}

async function namespaces() {
  const manager = new Manager(url, {
    transports,
    path,
    reconnection: false,
    ...(parser ? { parser } : {}),
  });
  const main = manager.socket("/", { auth: { token: args.tokens.alice } });
  const chatNsp = manager.socket("/chat", { auth: { token: args.tokens.alice } });
  await Promise.all([connected(main), connected(chatNsp)]);
  const joinMain = await ack(main, "wsgate:join", { room: "r-main" });
  const joinChat = await ack(chatNsp, "wsgate:join", { room: "r-chat" });
  // Each socket hears its own room only, with its namespace's frames.
  const atChat = next(chatNsp, "m");
  let mainHeard = false;
  main.on("m", () => {
    mainHeard = true;
  });
  await ack(chatNsp, "wsgate:publish", { room: "r-chat", event: "m", data: "for chat", echo: true });
  const [chatData] = await atChat;
  await new Promise((r) => setTimeout(r, 200));
  const sameEngine = main.io.engine === chatNsp.io.engine;
  const heardBefore = mainHeard;
  chatNsp.disconnect();
  // The other socket goes on after one namespace leaves.
  const stillAtMain = next(main, "m");
  await ack(main, "wsgate:publish", { room: "r-main", event: "m", data: "for main", echo: true });
  const [mainData] = await stillAtMain;
  main.disconnect();
  done({ ok: true, joinMain, joinChat, chatData, mainHeard: heardBefore, sameEngine, mainData });
}

async function seed004() {
  // The seed's client code, unchanged but for the tokens and the URL.
  const chatSocket = io(url + "/chat", {
    auth: { token: args.tokens.alice },
    transports,
    path,
    reconnection: false,
  });
  const other = io(url + "/chat", {
    auth: { token: args.tokens.bob },
    transports,
    path,
    reconnection: false,
  });
  await Promise.all([connected(chatSocket), connected(other)]);
  const joined = next(chatSocket, "chat:room:joined");
  chatSocket.emit("chat:room:join", "room-123");
  const [joinedData] = await joined;
  const otherJoined = next(other, "chat:room:joined");
  other.emit("chat:room:join", "room-123");
  await otherJoined;
  const message = next(other, "chat:message");
  chatSocket.emit("chat:message", { content: "Hello, world!", roomId: "room-123" });
  const [messageData] = await message;
  const typing = next(other, "status:typing");
  chatSocket.emit("status:typing", { roomId: "room-123", isTyping: true });
  const [typingData] = await typing;
  const error = next(chatSocket, "system:error");
  chatSocket.emit("chat:message", { content: "no room" });
  const [errorData] = await error;
  const left = next(chatSocket, "chat:room:left");
  chatSocket.emit("chat:room:leave", "room-123");
  await left;
  const gone = next(chatSocket, "disconnect");
  chatSocket.emit("auth:logout");
  const [reason] = await gone;
  other.disconnect();
  done({ ok: true, joinedData, messageData, typingData, errorData, reason });
}

async function seed001() {
  // The seed's client code: connect, `connected`, `message` → `messageReceived`, pushes.
  const socket = io(url, {
    auth: { token: args.tokens.alice },
    transports,
    path,
    reconnection: false,
  });
  const [connectedData] = await next(socket, "connected");
  const received = next(socket, "messageReceived");
  socket.emit("message", { message: "Hello from client!" });
  const [receivedData] = await received;
  const notification = next(socket, "notification");
  await fetch(`${url}/api/v1/push/users`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${args.apiKey}` },
    body: JSON.stringify({ userId: "alice", event: "notification", data: { title: "hi" } }),
  });
  const [notificationData] = await notification;
  const socketId = socket.id;
  socket.disconnect();
  done({ ok: true, socketId, connectedData, receivedData, notificationData });
}

async function seed003() {
  // The seed's client code: the /notifications namespace, pushes from the backend.
  const push = (data) =>
    fetch(`${url}/api/v1/push/users`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${args.apiKey}` },
      body: JSON.stringify({ userId: "alice", event: "new_notification", data }),
    });
  const token = args.tokens.alice;
  const socket = io(url + "/notifications", { auth: { token }, transports: ["websocket", "polling"], reconnection: false });
  await connected(socket);
  const got = next(socket, "new_notification");
  await push({ ticket: 7 });
  const [notification] = await got;
  socket.disconnect();
  // Its wscat line puts the token in the query instead.
  const byQuery = io(url + "/notifications", { query: { token }, transports: ["websocket"], reconnection: false });
  await connected(byQuery);
  const got2 = next(byQuery, "new_notification");
  await push({ ticket: 8 });
  const [viaQuery] = await got2;
  byQuery.disconnect();
  const main = await refused(connect("/", token));
  done({ ok: true, notification, viaQuery, mainRefused: main.message });
}

async function recovery() {
  const reconnecting = { reconnection: true, reconnectionDelay: 50, reconnectionDelayMax: 100 };
  const sub = await connected(connect("/", args.tokens.bob, reconnecting));
  const pub = await connected(connect("/", args.tokens.alice));
  const count = args.count ?? 150;
  const result = await cutAndRecover({ sub, pub, room: "rec", count, cuts: { 50: null, 100: null } });
  done({ ok: true, ...result });
}

async function idle() {
  // Connected and quiet past the native heartbeat's interval and timeout: the socket lives
  // on its Engine.IO heartbeat alone.
  const s = await connected(connect("/", args.tokens.alice));
  await ack(s, "wsgate:join", { room: "quiet" });
  await new Promise((r) => setTimeout(r, args.idleMs ?? 600));
  const heard = next(s, "m");
  const r = await ack(s, "wsgate:publish", { room: "quiet", event: "m", data: "still here", echo: true });
  const [data] = await heard;
  s.disconnect();
  done({ ok: true, reply: r, data, connected: true });
}

// The REST API as the test's backend.
function api(method, route, body) {
  const headers = { authorization: `Bearer ${args.apiKey}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  const init = { method, headers, body: body === undefined ? undefined : JSON.stringify(body) };
  return fetch(`${url}/api/v1${route}`, init).then((r) => r.json());
}

function pushNote(n) {
  return api("POST", "/push/users", { userId: args.user, event: "note", data: { n } });
}

function mailbox() {
  return api("GET", `/users/${encodeURIComponent(args.user)}/unread`).then((u) => u.mailbox);
}

// The user's mailbox once `cond` holds of it (the server acks a moment after the client).
async function mailboxWhen(what, cond) {
  const until = Date.now() + 5000;
  for (;;) {
    const m = await mailbox();
    if (m && cond(m)) return m;
    if (Date.now() > until) fail(`${what}: the mailbox is ${JSON.stringify(m)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function until(what, cond) {
  const limit = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > limit) fail(`waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

// A socket of the user whose `note` handler acks the notes `acking` names and keeps the
// others' ack callbacks; what it got, in order.
async function noteSocket(acking) {
  // The handler first: the mailbox comes right behind the CONNECT answer.
  const socket = connect("/", args.token);
  const got = [];
  const callbacks = {};
  socket.on("note", (data, ack) => {
    got.push(data.n);
    if (typeof ack !== "function") fail(`note ${data.n} came without an ack callback`);
    if (acking.includes(data.n)) ack();
    else callbacks[data.n] = ack;
  });
  await connected(socket);
  return { socket, got, callbacks };
}

async function privateAcks() {
  // A user that never acked: neither the live delivery nor the mailbox's counts as the ack.
  const live = await noteSocket([]);
  await pushNote(1);
  await until("note 1", () => live.got.length === 1);
  live.socket.disconnect();
  const replayed = await noteSocket([]);
  await until("note 1 again", () => replayed.got.length === 1);
  replayed.socket.disconnect();
  // Acked: not delivered again.
  const a = await noteSocket([1]);
  await until("note 1 a third time", () => a.got.length === 1);
  const afterFirst = await mailboxWhen("note 1 acked", (m) => m.acked >= 1);
  a.socket.disconnect();
  // Reconnected: 1 does not come again. 2 is not acked, 3 is: 2 holds 3 back.
  const b = await noteSocket([3]);
  await pushNote(2);
  await pushNote(3);
  await until("notes 2 and 3", () => b.got.length === 2);
  await ack(b.socket, "wsgate:ping", {});
  await new Promise((r) => setTimeout(r, 100));
  const heldBack = await mailbox();
  b.socket.disconnect();
  // 2 and 3 come again (at-least-once); acked now.
  const c = await noteSocket([2, 3]);
  await until("notes 2 and 3 again", () => c.got.length === 2);
  const afterAll = await mailboxWhen("notes 2 and 3 acked", (m) => m.acked >= 3);
  c.socket.disconnect();
  const d = await noteSocket([]);
  await pushNote(4);
  await until("note 4", () => d.got.length === 1);
  d.socket.disconnect();
  done({
    ok: true,
    got: [live.got, replayed.got, a.got, b.got, c.got, d.got],
    afterFirst,
    heldBack,
    afterAll,
  });
}

async function acksBound() {
  const stats = () => api("GET", "/stats").then((s) => s.socketioUnknownAcks);
  const unknownBefore = await stats();
  const s = await noteSocket([]);
  for (let n = 1; n <= 10; n++) {
    await pushNote(n);
    await until(`note ${n}`, () => s.got.length === n);
  }
  // It keeps working, and its stream keeps only its last four.
  const ping = await ack(s.socket, "wsgate:ping", {});
  const before = await mailbox();
  // The socket remembers its last four asks: the answers to the six before are ignored.
  for (let n = 1; n <= 10; n++) s.callbacks[n]();
  const after = await mailboxWhen("notes 7 to 10 acked", (m) => m.acked >= 10);
  const unknown = (await stats()) - unknownBefore;
  s.socket.disconnect();
  const again = await noteSocket([]);
  await pushNote(11);
  await until("note 11", () => again.got.length === 1);
  again.socket.disconnect();
  done({ ok: true, got: s.got, ping, before, after, unknown, again: again.got });
}

// A received binary value as the verdict reports it: its type and its bytes.
function bytesOf(b) {
  if (Buffer.isBuffer(b)) return { type: "Buffer", bytes: [...b] };
  if (b instanceof ArrayBuffer) return { type: "ArrayBuffer", bytes: [...new Uint8Array(b)] };
  return { type: typeof b, value: b ?? null };
}

async function binary() {
  const room = args.room;
  const alice = await connected(connect("/", args.tokens.alice));
  const bob = await connected(connect("/", args.tokens.bob));
  await ack(alice, "wsgate:join", { room });
  await ack(bob, "wsgate:join", { room });
  const photoAtBob = next(bob, "photo");
  const fromNativeAtBob = next(bob, "fromNative");
  const fromNativeAtAlice = next(alice, "fromNative");
  const published = await ack(alice, "wsgate:publish", {
    room,
    event: "photo",
    data: { name: "a.png", bytes: Buffer.from([0, 1, 2, 255]), list: [Buffer.from("hi"), 7] },
  });
  const [photo] = await photoAtBob;
  const photoData = { name: photo.name, bytes: bytesOf(photo.bytes), list: [bytesOf(photo.list[0]), photo.list[1]] };
  // The native clients answer when they have the photo.
  const [fromNative] = await fromNativeAtBob;
  const [fromNativeAlice] = await fromNativeAtAlice;
  const history = await ack(alice, "wsgate:history", { room });
  const historyData = history.messages.map((m) => ({
    event: m.event,
    bytes: bytesOf(m.data.bytes),
  }));
  leave([alice, bob], {
    published,
    photoData,
    fromNative: bytesOf(fromNative.bytes),
    fromNativeAlice: bytesOf(fromNativeAlice.bytes),
    historyType: history.type,
    historyData,
  });
}

// A REST push of `event` to `user` through the node at `base`.
function push(base, user, event, data) {
  return fetch(`${base}/api/v1/push/users`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${args.apiKey}` },
    body: JSON.stringify({ userId: user, event, data }),
  }).then((r) => r.json());
}

async function roundRobin() {
  const [, nodeB, nodeC] = args.nodes;
  // No keep-alive: each long-poll, POST and the upgrade open a connection of their own, which
  // the balancer sends to the next node.
  const fresh = () => ({ agent: new http.Agent({ keepAlive: false }) });
  const alice = await connected(connect("/", args.tokens.alice, { transports: ["polling"], ...fresh() }));
  const carol = await connected(connect("/", args.tokens.carol, fresh()));
  const upgraded = carol.io.engine.transport.name === "websocket"
    ? Promise.resolve()
    : new Promise((resolve) => carol.io.engine.once("upgrade", resolve));
  const bob = await connected(io(nodeC, { transports: ["websocket"], forceNew: true,
    reconnection: false, auth: { token: args.tokens.bob } }));
  const joins = [];
  for (const s of [alice, carol, bob]) joins.push((await ack(s, "wsgate:join", { room: "lobby" })).type);
  // Over long-polling through any node: a room event from bob's node and pushes from B.
  const round = async (n) => {
    const atAlice = next(alice, "chat");
    const atCarol = next(carol, "chat");
    const published = await ack(bob, "wsgate:publish", { room: "lobby", event: "chat", data: { n } });
    const chat = [(await atAlice)[0], (await atCarol)[0]];
    const pushAtAlice = next(alice, "note");
    const pushAtCarol = next(carol, "note");
    const pushed = [await push(nodeB, "alice", "note", { n }), await push(nodeB, "carol", "note", { n })];
    const notes = [(await pushAtAlice)[0], (await pushAtCarol)[0]];
    return { published: published.type, chat, pushed, notes };
  };
  const before = await round(1);
  await upgraded;
  const carolTransport = carol.io.engine.transport.name;
  const after = await round(2);
  // Something alice sends goes through too: her own publish reaches carol.
  const atCarol = next(carol, "chat");
  const own = await ack(alice, "wsgate:publish", { room: "lobby", event: "chat", data: { from: "alice" } });
  const [fromAlice] = await atCarol;
  leave([alice, carol, bob], { joins, before, carolTransport, after, own: own.type, fromAlice });
}

const scenarios = { chat, binary, refused: refusedScenario, namespaces, seed004, seed001, seed003, recovery, idle,
  privateAcks, acksBound, roundRobin };
const run = scenarios[scenario];
if (!run) fail(`unknown scenario ${scenario}`);
run().catch((e) => fail(String(e && e.stack ? e.stack : e)));
