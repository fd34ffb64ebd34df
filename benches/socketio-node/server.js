// The Node socket.io server wsgate is measured against: shaped like the seeds' NestJS gateways
// (JWT from `socket.handshake.auth.token`, rooms joined and published to by event handlers that
// answer through the ack), speaking the wire contract of wsgate's Socket.IO layer, so that the
// same `wsgate-loadgen --protocol socketio` run drives both servers.
//
//   JWT_SECRET=s node server.js [port] [--msgpack-path /socket.io-msgpack/]
//
// API_KEYS (comma-separated) turns on the REST push to a user, wsgate's route and answer:
//   POST /api/v1/push/users  Authorization: Bearer <key>  {"userId"|"userIds", "event", "data"}
//     -> io.to(`user:${id}`).emit(event, data) on both parsers' servers,
//        200 {"delivered": <sockets in those rooms>, "offline": [users with none]}
// (401 without a listed key, 400 for a bad body, 404 for any other path.)
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

const apiKeys = new Set((process.env.API_KEYS || "").split(",").filter((k) => k.length > 0));
// The socket.io servers, filled in below; a push reaches a user's sockets on each.
const servers = [];

function answer(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "Content-Type": "application/json",
    "Content-Length": Buffer.byteLength(text),
  });
  res.end(text);
}

// `POST /api/v1/push/users`: what the socket.io servers do not serve. A user's sockets are
// in its room `user:<id>` (below), so a push is one emit to that room per server.
function rest(req, res) {
  const path = req.url.split("?")[0];
  if (apiKeys.size === 0 || req.method !== "POST" || path !== "/api/v1/push/users") {
    return answer(res, 404, { error: { code: "not_found", message: "no such route" } });
  }
  const auth = req.headers.authorization || "";
  const key = auth.startsWith("Bearer ") ? auth.slice(7) : req.headers["x-api-key"];
  if (!apiKeys.has(key)) {
    return answer(res, 401, { error: { code: "auth.required", message: "an API key is required" } });
  }
  const chunks = [];
  let size = 0;
  req.on("data", (chunk) => {
    size += chunk.length;
    if (size > options.maxHttpBufferSize) {
      answer(res, 413, { error: { code: "too_large", message: "body too large" } });
      req.destroy();
      return;
    }
    chunks.push(chunk);
  });
  req.on("end", () => {
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch (e) {
      return answer(res, 400, { error: { code: "bad_request", message: "the body is not JSON" } });
    }
    const users = typeof body.userId === "string" ? [body.userId] : body.userIds;
    if (!Array.isArray(users) || !users.every(isRoom) || typeof body.event !== "string") {
      return answer(res, 400, {
        error: { code: "bad_request", message: "`userId` (or `userIds`) and `event` are required" },
      });
    }
    let delivered = 0;
    const offline = [];
    for (const user of users) {
      const room = `user:${user}`;
      let sockets = 0;
      for (const io of servers) {
        sockets += io.sockets.adapter.rooms.get(room)?.size || 0;
        io.to(room).emit(body.event, body.data);
      }
      delivered += sockets;
      if (sockets === 0) offline.push(user);
    }
    answer(res, 200, { delivered, offline });
  });
}

const httpServer = http.createServer(rest);

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

servers.push(new Server(httpServer, { ...options, path: "/socket.io/" }));
servers.push(new Server(httpServer, { ...options, path: msgpackPath, parser: msgpackParser }));
servers.forEach(gateway);

// Node's default accept backlog is 511; the loadgen opens up to 1,000 handshakes per worker at
// once, and an overflowing accept queue turns into SYN retransmits (handshakes of 30 s) and
// resets. 4096 is the kernel's `somaxconn` here, what wsgate's listener gets.
httpServer.listen({ port, host: "127.0.0.1", backlog: 4096 }, () => {
  console.log(`socketio-node listening port=${httpServer.address().port} pid=${process.pid}`);
});

for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => process.exit(0));
}
