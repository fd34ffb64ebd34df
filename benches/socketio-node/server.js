// The Node socket.io server wsgate is measured against: shaped like the seeds' NestJS gateways
// (JWT from `socket.handshake.auth.token`, rooms joined and published to by event handlers that
// answer through the ack), speaking the wire contract of wsgate's Socket.IO layer, so that the
// same `wsgate-loadgen --protocol socketio` run drives both servers.
//
//   JWT_SECRET=s node server.js [port] [--msgpack-path /socket.io-msgpack/]
//
// PING_INTERVAL_MS and PING_TIMEOUT_MS change the heartbeat (the tests make it short, so that
// a client that does not answer pings is closed within the run).
// Port 0 (the default) lets the kernel pick; the first line on stdout is
// `socketio-node listening port=<port> pid=<pid>`. Two socket.io servers share the HTTP
// server: the default parser at `/socket.io/`, socket.io-msgpack-parser at the msgpack path.
//
// Events (payload: one object, answered through the ack):
//   wsgate:join    {room}                     -> socket.join(room), ack {type:"reply"}
//   wsgate:publish {room, event, data, echo?} -> to the room's sockets (the sender too with
//                                                echo), ack {type:"reply"}
// A bad payload is acked {type:"error", code, message}. socket.io hands a handler its
// arguments and an ack callback, never the packet's ack id, so a reply carries no `id`
// (wsgate's carries the ack id; the loadgen matches acks by the packet's id either way).
"use strict";

const http = require("node:http");
const jwt = require("jsonwebtoken");
const { Server } = require("socket.io");
const msgpackParser = require("socket.io-msgpack-parser");

const args = process.argv.slice(2);
let port = 0;
let msgpackPath = "/socket.io-msgpack/";
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--msgpack-path") {
    msgpackPath = args[++i];
  } else {
    port = Number(args[i]);
  }
}
const secret = process.env.JWT_SECRET;
if (!secret) {
  console.error("socketio-node: JWT_SECRET is required");
  process.exit(2);
}

// Seed 004's gateway configuration (websocket.config.ts).
const options = {
  cors: { origin: process.env.FRONTEND_URL || "http://localhost:3000", credentials: true },
  transports: ["websocket", "polling"],
  pingTimeout: Number(process.env.PING_TIMEOUT_MS || 60000),
  pingInterval: Number(process.env.PING_INTERVAL_MS || 25000),
  upgradeTimeout: 10000,
  maxHttpBufferSize: 1e6,
  // Two engines share the HTTP server: neither may end an upgrade meant for the other.
  destroyUpgrade: false,
};

const httpServer = http.createServer();

function error(code, message) {
  return { type: "error", code, message };
}

function isRoom(room) {
  return typeof room === "string" && room.length > 0 && room.length <= 128;
}

function gateway(io) {
  // handleConnection: verify the token before the socket is let in. A refusal is a
  // CONNECT_ERROR `{message, data: {code}}` and the client's `connect_error` fires.
  io.use((socket, next) => {
    const token = socket.handshake.auth && socket.handshake.auth.token;
    if (typeof token !== "string") {
      const err = new Error("a token is required");
      err.data = { code: "auth.required" };
      return next(err);
    }
    try {
      const claims = jwt.verify(token, secret, { algorithms: ["HS256"] });
      socket.data.userId = claims.sub;
      return next();
    } catch (e) {
      const err = new Error("invalid token");
      err.data = { code: e.name === "TokenExpiredError" ? "auth.expired" : "auth.invalid" };
      return next(err);
    }
  });

  io.on("connection", (socket) => {
    socket.join(`user:${socket.data.userId}`);

    socket.on("wsgate:join", (payload, ack) => {
      if (typeof ack !== "function") return;
      if (!payload || !isRoom(payload.room)) {
        return ack(error("bad_request", "`room` must be a room name"));
      }
      socket.join(payload.room);
      ack({ type: "reply" });
    });

    socket.on("wsgate:publish", (payload, ack) => {
      if (typeof ack !== "function") return;
      if (!payload || !isRoom(payload.room) || typeof payload.event !== "string") {
        return ack(error("bad_request", "`room` and `event` are required"));
      }
      if (!socket.rooms.has(payload.room)) {
        return ack(error("room.forbidden", `not in room "${payload.room}"`));
      }
      const to = payload.echo === true ? io.to(payload.room) : socket.to(payload.room);
      to.emit(payload.event, payload.data);
      ack({ type: "reply" });
    });
  });
}

gateway(new Server(httpServer, { ...options, path: "/socket.io/" }));
gateway(new Server(httpServer, { ...options, path: msgpackPath, parser: msgpackParser }));

// Node's default accept backlog is 511; the loadgen opens up to 1,000 handshakes per worker at
// once, and an overflowing accept queue turns into SYN retransmits (handshakes of 30 s) and
// resets. 4096 is the kernel's `somaxconn` here, what wsgate's listener gets.
httpServer.listen({ port, host: "127.0.0.1", backlog: 4096 }, () => {
  console.log(`socketio-node listening port=${httpServer.address().port} pid=${process.pid}`);
});

for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => process.exit(0));
}
