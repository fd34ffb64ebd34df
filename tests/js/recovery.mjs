// The recovery run socketio.mjs (one server) and cluster.mjs (several nodes) share: a
// publisher publishes 1..count to a room while the subscriber's connection is cut (socket.io's
// own way: the engine closed under the socket) after the events `cuts` names, each time
// reconnecting to the URL it gives (`null`: the same server) with its pid and last offset.
import { fail } from "./verdict.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function ack(socket, event, arg) {
  return socket.timeout(5000).emitWithAck(event, arg);
}

// Resolves once `socket`'s engine has closed (at most 5 s).
function engineClosed(socket) {
  const engine = socket.io.engine;
  if (!engine || engine.readyState === "closed") return Promise.resolve();
  return Promise.race([new Promise((r) => engine.once("close", r)), sleep(5000)]);
}

// `sub` (made with reconnection on) and `pub`, both connected: what the subscriber got, as
// `recoveredFlags` (one per reconnect), `ids` (its first and each reconnect's), where it
// ended (`landedOn`), and what it lacks of 1..count, got twice or out of order.
export async function cutAndRecover({ sub, pub, room, count, cuts }) {
  const ids = [sub.id];
  await ack(sub, "wsgate:join", { room });
  await ack(pub, "wsgate:join", { room });
  const got = [];
  const recoveredFlags = [];
  sub.on("m", (n) => got.push(n));
  sub.on("connect", () => {
    recoveredFlags.push(sub.recovered);
    ids.push(sub.id);
  });
  for (let n = 1; n <= count; n++) {
    const r = await ack(pub, "wsgate:publish", { room, event: "m", data: n });
    if (r.type !== "reply") fail(`publish ${n}: ${JSON.stringify(r)}`);
    if (n in cuts) {
      // Its next connection goes to another server, if it names one.
      if (cuts[n]) sub.io.uri = cuts[n];
      sub.io.engine.close();
    }
    await sleep(2);
  }
  const until = Date.now() + 10000;
  while (got.length < count && Date.now() < until) await sleep(20);
  await sleep(200);
  const landedOn = sub.io.engine.hostname + ":" + sub.io.engine.port;
  // Both leave for good ("client namespace disconnect": nothing to recover), and the caller
  // exits only once their engines closed, after the server had the DISCONNECT packets: a
  // process gone with them in flight is a connection lost, which the server keeps a socket
  // to recover for (as Node's does).
  const closed = [pub, sub].map((s) => engineClosed(s));
  pub.disconnect();
  sub.disconnect();
  await Promise.all(closed);
  const missing = [];
  for (let n = 1; n <= count; n++) if (!got.includes(n)) missing.push(n);
  const duplicates = got.length - new Set(got).size;
  const inOrder = got.every((x, i) => i === 0 || x > got[i - 1]);
  const counts = { received: got.length, missing, duplicates, inOrder };
  return { cuts: Object.keys(cuts).length, recoveredFlags, ids, landedOn, ...counts };
}
