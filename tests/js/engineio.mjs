// Drives wsgate's Engine.IO echo with the real engine.io-client (v6) and prints one JSON line
// of what happened; tests/engineio.rs asserts on it.
//
//   node engineio.mjs <http-url> <scenario> [transports]
//
// Scenarios:
//   echo        text and binary messages, sequence-numbered, each echoed back once and in order
//   upgrade     messages sent without pause from the first packet on, before, during and after the
//               upgrade from polling to WebSocket; all must come back once and in order
//   no-pong     the client stops answering pings; the server must close the session
// transports: "polling", "websocket" or "polling,websocket" (the default: polling, then upgrade).
import { Socket } from "engine.io-client";
import { done, fail, deadline } from "./verdict.mjs";

const [url, scenario, transportList = "polling,websocket"] = process.argv.slice(2);
const transports = transportList.split(",");
const TEXT = 20;
const BINARY = 5;

deadline(scenario, 15000);

const socket = new Socket(url, { transports, path: "/socket.io/" });
socket.on("error", (e) => fail(`error: ${e}`));

function binary(i) {
  return Uint8Array.from([0, 255, i, 1, 2, 3]);
}

if (scenario === "echo") {
  const got = [];
  socket.on("open", () => {
    for (let i = 0; i < TEXT; i++) socket.send(`msg-${i} ✓`);
    for (let i = 0; i < BINARY; i++) socket.send(binary(i));
  });
  socket.on("message", (data) => {
    got.push(typeof data === "string" ? data : `bin:${Array.from(new Uint8Array(data)).join(",")}`);
    if (got.length === TEXT + BINARY) {
      const want = [];
      for (let i = 0; i < TEXT; i++) want.push(`msg-${i} ✓`);
      for (let i = 0; i < BINARY; i++) want.push(`bin:${Array.from(binary(i)).join(",")}`);
      const transport = socket.transport.name;
      socket.close();
      done({ ok: JSON.stringify(got) === JSON.stringify(want), transport, got });
    }
  });
} else if (scenario === "upgrade") {
  // Messages go out every 2 ms from the open packet until 40 have been sent after the upgrade.
  let sent = 0;
  let upgradedAt = null;
  const got = [];
  const sentOver = { polling: 0, websocket: 0 };
  const gotOver = { polling: 0, websocket: 0 };
  socket.on("upgrade", () => {
    upgradedAt = sent;
  });
  const tick = () => {
    const i = sent++;
    sentOver[socket.transport.name]++;
    socket.send(i % 3 === 2 ? binary(i % 256) : `seq:${i}`);
    if (upgradedAt === null || sent < upgradedAt + 40) setTimeout(tick, 2);
  };
  socket.on("open", tick);
  socket.on("message", (data) => {
    gotOver[socket.transport.name]++;
    got.push(typeof data === "string" ? Number(data.slice(4)) : new Uint8Array(data)[2]);
    if (upgradedAt !== null && got.length === sent && sent >= upgradedAt + 40) {
      const want = [...Array(sent).keys()].map((i) => (i % 3 === 2 ? i % 256 : i));
      const inOrder = JSON.stringify(got) === JSON.stringify(want);
      const transport = socket.transport.name;
      socket.close();
      done({ ok: inOrder, transport, sent, upgradedAt, sentOver, gotOver });
    }
  });
} else if (scenario === "no-pong") {
  let pings = 0;
  socket.on("open", () => {
    socket._sendPacket = function (type, ...rest) {
      if (type === "pong") return;
      return Socket.prototype._sendPacket.call(this, type, ...rest);
    };
  });
  socket.on("ping", () => pings++);
  socket.on("close", (reason) => done({ ok: true, reason, pings, transport: transports.join(",") }));
} else {
  fail(`unknown scenario ${scenario}`);
}
