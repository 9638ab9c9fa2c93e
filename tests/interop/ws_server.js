// The seed guide's first server (section 1, "Node.js Server with 'ws' Library"), in
// plain JavaScript, for rtclient's generic mode on the raw WebSocket transports.
//
//   node ws_server.js [--ping-ms=30000]
//
// Listens on 127.0.0.1, port 0, and prints {"port": N} as its first stdout line; logs go
// to stderr. Exits on SIGTERM / SIGINT and when its stdin closes (the test process died).
//
// As in the seed: JSON envelopes {"type", "payload"}; the token comes from the query
// string (?token=...), a missing or unknown one closes the socket with 4001
// "Unauthorized"; the greeting is `connected {clientId}`; rooms live only as long as
// the socket (`join:room {roomId}` -> `user:joined {userId, roomId}` to the room,
// `leave:room`, `room:message {roomId, ...}` -> broadcast to the others in the room with
// `from`); no acks; a ping every --ping-ms, and a client that did not answer the last
// one is terminated. Tokens: "secret-<name>" is the user <name>.
//
// HTTP control endpoints (JSON), on the same port:
//   GET  /control/state  -> what the server saw: connections, accepted, rejected (4001), frames
//                           (every frame received: {clientId, userId, type, payload}),
//                           pings, pongs, terminated, rooms {roomId: [userId]}, urls
//   POST /control/kick   -> terminate every socket (a server-side cut, no close frame)
"use strict";

const http = require("node:http");
const { WebSocketServer, WebSocket } = require("ws");

function option(flag, fallback) {
  const prefix = `--${flag}=`;
  for (const arg of process.argv.slice(2)) {
    if (arg.startsWith(prefix)) return arg.slice(prefix.length);
  }
  return fallback;
}

const pingMs = Number(option("ping-ms", "30000"));

const state = {
  options: { pingMs },
  connections: 0,
  rejected: 0,
  frames: [],
  pings: 0,
  pongs: 0,
  terminated: 0,
  urls: [], // the request path of every upgrade, token masked
  accepted: [], // {clientId, userId} of every connection accepted, in order
};

const clients = new Map(); // clientId -> ws
const rooms = new Map(); // roomId -> Set of clientIds
let nextId = 0;

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://localhost");
  if (req.method === "GET" && url.pathname === "/control/state") {
    const roomList = {};
    for (const [roomId, members] of rooms) {
      roomList[roomId] = [...members].map((id) => clients.get(id)?.userId);
    }
    return reply(res, 200, { ...state, rooms: roomList, live: clients.size });
  }
  if (req.method === "POST" && url.pathname === "/control/kick") {
    for (const ws of clients.values()) ws.terminate();
    return reply(res, 200, { ok: true });
  }
  return reply(res, 404, { error: "not found" });
});

function reply(res, status, body) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

const wss = new WebSocketServer({ server });

wss.on("connection", (ws, request) => {
  ws.id = `${Date.now()}-${++nextId}`;
  ws.isAlive = true;
  ws.rooms = new Set();

  // Parse auth from query string (as the seed does).
  const url = new URL(request.url || "/", "http://localhost");
  const token = url.searchParams.get("token");
  state.urls.push(url.pathname + (token === null ? "" : "?token=***"));
  const user = verifyToken(token);
  if (user === null) {
    state.rejected += 1;
    ws.close(4001, "Unauthorized");
    return;
  }
  ws.userId = user;
  state.connections += 1;
  state.accepted.push({ clientId: ws.id, userId: user });
  clients.set(ws.id, ws);

  ws.on("pong", () => {
    ws.isAlive = true;
    state.pongs += 1;
  });
  ws.on("message", (data) => handleMessage(ws, data.toString()));
  ws.on("close", () => handleDisconnect(ws));
  ws.on("error", (error) => process.stderr.write(`ws error ${ws.id}: ${error}\n`));

  sendTo(ws, "connected", { clientId: ws.id });
});

function verifyToken(token) {
  if (!token || !token.startsWith("secret-")) return null;
  return token.slice("secret-".length);
}

function handleMessage(client, data) {
  let message;
  try {
    message = JSON.parse(data);
  } catch (error) {
    process.stderr.write(`bad frame from ${client.id}\n`);
    return;
  }
  const { type, payload } = message;
  state.frames.push({ clientId: client.id, userId: client.userId, type, payload });
  switch (type) {
    case "join:room":
      joinRoom(client, payload.roomId);
      break;
    case "leave:room":
      leaveRoom(client, payload.roomId);
      break;
    case "room:message":
      broadcastToRoom(payload.roomId, "room:message", { ...payload, from: client.userId }, client.id);
      break;
    default:
      process.stderr.write(`unknown message type: ${type}\n`);
  }
}

function handleDisconnect(client) {
  for (const roomId of client.rooms) leaveRoom(client, roomId);
  clients.delete(client.id);
}

function joinRoom(client, roomId) {
  if (!rooms.has(roomId)) rooms.set(roomId, new Set());
  rooms.get(roomId).add(client.id);
  client.rooms.add(roomId);
  broadcastToRoom(roomId, "user:joined", { userId: client.userId, roomId });
}

function leaveRoom(client, roomId) {
  const room = rooms.get(roomId);
  if (room) {
    room.delete(client.id);
    if (room.size === 0) rooms.delete(roomId);
  }
  client.rooms.delete(roomId);
  broadcastToRoom(roomId, "user:left", { userId: client.userId, roomId });
}

function sendTo(client, type, payload) {
  if (client.readyState === WebSocket.OPEN) client.send(JSON.stringify({ type, payload }));
}

function broadcastToRoom(roomId, type, payload, excludeClientId) {
  const room = rooms.get(roomId);
  if (!room) return;
  for (const clientId of room) {
    if (clientId !== excludeClientId) {
      const client = clients.get(clientId);
      if (client) sendTo(client, type, payload);
    }
  }
}

// Heartbeat, as in the seed: terminate a client that did not answer the last ping.
const heartbeat = setInterval(() => {
  for (const [clientId, client] of clients) {
    if (!client.isAlive) {
      state.terminated += 1;
      client.terminate();
      clients.delete(clientId);
      continue;
    }
    client.isAlive = false;
    state.pings += 1;
    client.ping();
  }
}, pingMs);

function shutdown() {
  clearInterval(heartbeat);
  for (const client of clients.values()) client.close(1001, "Server shutting down");
  process.exit(0);
}

for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, shutdown);
for (const event of ["end", "close", "error"]) process.stdin.on(event, shutdown);
process.stdin.resume();

server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
  process.stderr.write(`ws interop server: ${JSON.stringify(state.options)}\n`);
});
