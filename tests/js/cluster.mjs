// Drives a cluster of wsgate nodes (one Redis) with the real socket.io-client (v4) and prints
// one JSON line of what happened; tests/cluster_socketio.rs asserts on it.
//
//   node cluster.mjs <scenario> <json-args>
//
// json-args: {"urls": ["http://a", "http://b", "http://c"], "tokens": {...}, "transports": [...],
//             "parser": "json"|"msgpack", "path": "/socket.io/", "apiKey": "...", ...}
//
// Scenarios:
//   recoverAcross     a subscriber on node A in a room, a publisher on node B publishing 1..N;
//                     the subscriber's connection is cut twice and it reconnects first to B,
//                     then to C (socket.io's own reconnection, its manager's uri moved): each
//                     time `recovered`, with the same id, missing nothing, nothing twice
//                     (recovery.mjs's run, as socketio.mjs's `recovery` on one server)
//   recoverImpossible the subscriber on A is cut, the publisher on B publishes `missed` events
//                     meanwhile (and, with `push`, a REST push to the subscriber's user, which
//                     waits in its mailbox), the subscriber reconnects to C after `waitMs`:
//                     `recovered` false and a new pid when the stream was trimmed past its
//                     point, the record expired or C's Redis does not answer (`connectMs`: how
//                     long the CONNECT took); the pushed `notes` come after the CONNECT answer
//   leaveWhileAsking  the subscriber on A is cut; after `waitMs` it reconnects to C (whose
//                     link to Redis the Rust side stalls meanwhile) and its connection is
//                     closed before the CONNECT answer; after `againMs` it reconnects to B:
//                     `recovered` there, the record kept again by C once Redis answered
//   foreignPid        the subscriber (bob) on A is cut; alice connects to C with bob's pid and
//                     offset: a new socket for her; then bob reconnects to B: `recovered`
//   spread            Socket.IO clients on three nodes: room events between them, a private
//                     message across nodes, and a REST push on C reaching dave's socket on A
//                     (dave's native WebSocket on B is the Rust side's); `ids`: the sockets' ids
import { io } from "socket.io-client";
import msgpackParser from "socket.io-msgpack-parser";
import { done, fail, deadline, next } from "./verdict.mjs";
import { cutAndRecover } from "./recovery.mjs";

const [scenario, rawArgs = "{}"] = process.argv.slice(2);
const args = JSON.parse(rawArgs);
const transports = args.transports ?? ["websocket"];
const path = args.path ?? "/socket.io/";
const parser = args.parser === "msgpack" ? msgpackParser : undefined;
const [urlA, urlB, urlC] = args.urls;
const room = args.room ?? "rec";

deadline(scenario, 30000);

function connect(url, token, extra = {}) {
  const opts = { transports, path, forceNew: true, reconnection: false, auth: { token }, ...extra };
  if (parser) opts.parser = parser;
  return io(url, opts);
}

function connected(socket) {
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (e) => reject(new Error(`connect_error: ${e.message}`)));
  });
}

function ack(socket, event, arg) {
  return socket.timeout(5000).emitWithAck(event, arg);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function publish(pub, n) {
  const r = await ack(pub, "wsgate:publish", { room, event: "m", data: n });
  if (r.type !== "reply") fail(`publish ${n}: ${JSON.stringify(r)}`);
}

async function recoverAcross() {
  const reconnecting = { reconnection: true, reconnectionDelay: 50, reconnectionDelayMax: 100 };
  const sub = await connected(connect(urlA, args.tokens.bob, reconnecting));
  const pub = await connected(connect(urlB, args.tokens.alice));
  const count = args.count ?? 150;
  // Cut on A and back on B, then cut on B and back on C.
  const result = await cutAndRecover({ sub, pub, room, count, cuts: { 50: urlB, 100: urlC } });
  done({ ok: true, ...result });
}

// A subscriber on A (no reconnection of its own) and a publisher on B in the room; the
// subscriber gets 1..n, then its connection is cut.
async function receivedThenCut(n) {
  const sub = await connected(connect(urlA, args.tokens.bob));
  const before = { id: sub.id, pid: sub._pid };
  await ack(sub, "wsgate:join", { room });
  const pub = await connected(connect(urlB, args.tokens.alice));
  await ack(pub, "wsgate:join", { room });
  const got = [];
  sub.on("m", (x) => got.push(x));
  for (let i = 1; i <= n; i++) await publish(pub, i);
  const until = Date.now() + 5000;
  while (got.length < n && Date.now() < until) await sleep(10);
  const gone = next(sub, "disconnect");
  sub.io.engine.close();
  await gone;
  return { sub, pub, before, got };
}

// `sub` reconnected to `url` (with its pid and offset): its state then; both sockets closed
// once it got `n` events (or after 5 s).
async function backOn(url, sub, pub, got, n) {
  sub.io.uri = url;
  const back = connected(sub);
  sub.connect();
  await back;
  const after = { id: sub.id, pid: sub._pid, recovered: sub.recovered };
  const until = Date.now() + 5000;
  while (got.length < n && Date.now() < until) await sleep(10);
  pub.disconnect();
  sub.disconnect();
  return after;
}

async function recoverImpossible() {
  const { sub, pub, before, got } = await receivedThenCut(3);
  const notes = [];
  sub.on("note", (data) => notes.push(data));
  const missed = args.missed ?? 0;
  for (let n = 4; n < 4 + missed; n++) await publish(pub, n);
  if (args.push) {
    const pushed = await fetch(`${urlB}/api/v1/push/users`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${args.apiKey}` },
      body: JSON.stringify({ userId: args.names.bob, event: "note", data: { while: "away" } }),
    });
    if (pushed.status !== 200) fail(`the push: ${pushed.status} ${await pushed.text()}`);
  }
  await sleep(args.waitMs ?? 100);
  sub.io.uri = urlC;
  const back = connected(sub);
  const asked = Date.now();
  sub.connect();
  await back;
  const connectMs = Date.now() - asked;
  const after = { id: sub.id, pid: sub._pid, recovered: sub.recovered };
  if (args.push) {
    const until = Date.now() + 5000;
    while (notes.length === 0 && Date.now() < until) await sleep(10);
  }
  // A fresh socket is in no room: what is published now does not reach it.
  await publish(pub, 100);
  await sleep(200);
  pub.disconnect();
  sub.disconnect();
  done({ ok: true, before, after, connectMs, got, notes });
}

async function leaveWhileAsking() {
  const { sub, pub, before, got } = await receivedThenCut(1);
  await publish(pub, 2);
  await sleep(args.waitMs);
  // To C, which cannot answer yet: the connection goes before the CONNECT answer.
  sub.io.uri = urlC;
  let answeredOnC = false;
  sub.once("connect", () => {
    answeredOnC = true;
  });
  sub.io.once("open", () => setTimeout(() => sub.io.engine.close(), 50));
  sub.connect();
  await sleep(args.againMs);
  sub.off("connect");
  const after = await backOn(urlB, sub, pub, got, 2);
  done({ ok: true, before, after, answeredOnC, got });
}

async function foreignPid() {
  const { sub, pub, before, got } = await receivedThenCut(1);
  await publish(pub, 2);
  const auth = { token: args.tokens.alice, pid: before.pid, offset: sub._lastOffset };
  const thief = await connected(connect(urlC, args.tokens.alice, { auth }));
  const stolen = { pid: thief._pid, recovered: thief.recovered ?? false };
  thief.disconnect();
  const after = await backOn(urlB, sub, pub, got, 2);
  done({ ok: true, before, stolen, after, got });
}

async function spread() {
  const alice = await connected(connect(urlA, args.tokens.alice));
  const bob = await connected(connect(urlB, args.tokens.bob));
  const carol = await connected(connect(urlC, args.tokens.carol));
  for (const s of [alice, bob, carol]) {
    const r = await ack(s, "wsgate:join", { room: "spread" });
    if (r.type !== "reply") fail(`join: ${JSON.stringify(r)}`);
  }
  const fromAlice = [next(bob, "chat"), next(carol, "chat")];
  await ack(alice, "wsgate:publish", { room: "spread", event: "chat", data: { from: "A" } });
  const [[atBob], [atCarol]] = await Promise.all(fromAlice);
  const fromBob = [next(alice, "chat"), next(carol, "chat")];
  await ack(bob, "wsgate:publish", { room: "spread", event: "chat", data: { from: "B" } });
  const [[atAlice], [atCarol2]] = await Promise.all(fromBob);
  const dm = next(carol, "dm");
  const sent = await ack(alice, "wsgate:send", { to: args.names.carol, event: "dm", data: "A to C" });
  const [dmData] = await dm;
  // dave: a Socket.IO socket on A; his native WebSocket on B is the Rust side's.
  const dave = await connected(connect(urlA, args.tokens.dave));
  const pushed = next(dave, "notification");
  const rest = await fetch(`${urlC}/api/v1/push/users`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${args.apiKey}` },
    body: JSON.stringify({ userId: args.names.dave, event: "notification", data: { via: "C" } }),
  }).then((r) => r.json());
  const [pushData] = await pushed;
  const transport = alice.io.engine.transport.name;
  const ids = [alice, bob, carol, dave].map((s) => s.id);
  for (const s of [alice, bob, carol, dave]) s.disconnect();
  done({ ok: true, transport, ids, atBob, atCarol, atAlice, atCarol2, sent, dmData, rest, pushData });
}

const scenarios = { recoverAcross, recoverImpossible, leaveWhileAsking, foreignPid, spread };
const run = scenarios[scenario];
if (!run) fail(`unknown scenario ${scenario}`);
run().catch((e) => fail(String(e && e.stack ? e.stack : e)));
