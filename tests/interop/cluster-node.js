// One node of a Node.js socket.io 4.8 cluster on @socket.io/redis-streams-adapter, for the
// tests/interop cluster scenarios (test_node_cluster.py). Nobody here wrote the adapter or
// socket.io's connection state recovery: these nodes are the reference for how a real
// Socket.IO cluster behaves when a client fails over.
//
//   node cluster-node.js --redis=redis://127.0.0.1:PORT/0 --name=A
//        [--max-disconnection-ms=30000] [--ping-interval-ms=1000] [--ping-timeout-ms=5000]
//
// Listens on 127.0.0.1, port 0, and prints {"port": N, "name": A} as its first stdout line
// once the adapter reads the stream (see ready() below); logs go to stderr. Stops
// gracefully on SIGTERM / SIGINT and when its stdin closes (the test process died): the
// sessions of its clients are in Redis when it exits (see shutdown()). SIGKILL stops it
// with nothing persisted. connectionStateRecovery is always on (skipMiddlewares: true, as
// socket.io's default).
//
// Socket.IO (namespace "/"), the events of server.js that a cluster needs, behind the same
// auth middleware (token "good"):
//   register {name}  -> socket.data.name = name; ack {sid, pid, recovered, node}
//   echo <any>       -> ack with the data as received
//   join <room>      -> socket.join(room); ack {room, rooms}
//   say {room, text, seq?} -> io.to(room).emit("said", {room, text, seq, from, node}); ack {ok}
//
// HTTP control endpoints (JSON), on the same port (tests call the node directly, not
// through a FaultProxy):
//   GET  /control/state          -> {name, refusing, refused, connections, disconnects}
//   POST /control/refuse {refuse} -> while true, every new Socket.IO request (handshake or
//        WebSocket upgrade) gets an HTTP 503 before engine.io sees it; live connections stay
//   POST /control/emit {room, event, data} -> io.to(room).emit(event, data)
//
// Why refuse at the HTTP level: a Socket.IO middleware (io.use) runs after the adapter has
// restored the session, and restoreSession() is a GETDEL: a node that turned a recovering
// client away there would delete the session it cannot serve, and the next node would find
// nothing. With skipMiddlewares (the default) a recovering client skips io.use anyway.
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");
const { createClient } = require("redis");
const { createAdapter } = require("@socket.io/redis-streams-adapter");

function option(flag, fallback) {
  const prefix = `--${flag}=`;
  for (const arg of process.argv.slice(2)) {
    if (arg.startsWith(prefix)) return arg.slice(prefix.length);
  }
  return fallback;
}

const redisUrl = option("redis");
const name = option("name", `node-${process.pid}`);
const maxDisconnectionDuration = Number(option("max-disconnection-ms", 30000));
// Shorter than socket.io's 25 s + 20 s, long enough that a test machine under load does
// not drop links by ping timeout: no scenario here relies on a ping to notice a cut.
const pingInterval = Number(option("ping-interval-ms", 1000));
const pingTimeout = Number(option("ping-timeout-ms", 5000));
const STREAM = "socket.io"; // the adapter's default stream name
if (!redisUrl) {
  process.stderr.write("cluster-node.js: --redis=redis://HOST:PORT/DB is required\n");
  process.exit(2);
}

const state = {
  name,
  options: { maxDisconnectionDuration, pingInterval, pingTimeout },
  refusing: false,
  refused: 0, // requests answered 503 while refusing
  connections: [], // {sid, pid, recovered} per "connection" event
  disconnects: [], // {sid, name, reason}
};

// The adapter's clients are duplicates of this one, so they carry its name: ready() finds
// this node's stream reader in CLIENT LIST by it.
const clientName = `rtclient-interop-${name}-${process.pid}`;
const redis = createClient({ url: redisUrl, name: clientName });
redis.on("error", (err) => process.stderr.write(`redis: ${err.message}\n`));

const server = http.createServer((req, res) => {
  control(req, res).catch((err) => reply(res, 500, { error: String(err && err.stack) }));
});

function log(text) {
  process.stderr.write(`${new Date().toISOString()} node ${name}: ${text}\n`);
}

function refuse(req) {
  return state.refusing && req.url.startsWith("/socket.io/");
}

let io = null;

async function main() {
  await redis.connect();
  io = new Server(server, {
    serveClient: false,
    pingInterval,
    pingTimeout,
    connectionStateRecovery: { maxDisconnectionDuration, skipMiddlewares: true },
    adapter: createAdapter(redis),
  });
  gate();
  setup();
  await ready();
  server.listen(0, "127.0.0.1", () => {
    process.stdout.write(`${JSON.stringify({ port: server.address().port, name })}\n`);
    process.stderr.write(`cluster node ${name}: ${JSON.stringify(state.options)}\n`);
  });
}

// engine.io has attached its "request" and "upgrade" listeners: put the refusal in front.
function gate() {
  for (const event of ["request", "upgrade"]) {
    const listeners = server.listeners(event);
    server.removeAllListeners(event);
    server.on(event, (req, resOrSocket, head) => {
      if (!refuse(req)) {
        for (const listener of listeners) listener.call(server, req, resOrSocket, head);
        return;
      }
      state.refused += 1;
      log(`refused ${event} ${req.url.split("?")[0]}`);
      if (event === "request") return reply(resOrSocket, 503, { error: "refusing connections" });
      resOrSocket.end("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    });
  }
}

// The adapter reads the stream with XREAD from "$" (entries added after the call), and
// stays at "$" until it has read one entry: a broadcast added while its first XREAD is not
// yet blocked, or between two XREADs that timed out, would never reach this node. So wait
// until this node's reader is blocked in XREAD, then add an entry (no "nsp": every adapter
// skips it) that moves every blocked reader to a concrete offset.
async function ready() {
  for (let i = 0; ; i += 1) {
    const clients = await redis.sendCommand(["CLIENT", "LIST"]);
    const blocked = clients
      .split("\n")
      .some((line) => line.includes(`name=${clientName} `) && / cmd=xread /.test(line) && / flags=b /.test(line));
    if (blocked) break;
    if (i >= 500) throw new Error("the adapter's stream reader did not start within 10 s");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await redis.sendCommand(["XADD", STREAM, "*", "warmup", name]);
}

function setup() {
  io.use((socket, next) => {
    const token = socket.handshake.auth && socket.handshake.auth.token;
    if (token === "good") return next();
    return next(new Error("INVALID_TOKEN"));
  });

  io.on("connection", (socket) => {
    state.connections.push({ sid: socket.id, pid: socket.pid ?? null, recovered: socket.recovered });
    log(`connection ${socket.id} recovered=${socket.recovered}`);

    socket.on("register", (data, ack) => {
      socket.data.name = data && data.name;
      if (typeof ack === "function") {
        ack({ sid: socket.id, pid: socket.pid ?? null, recovered: socket.recovered, node: name });
      }
    });

    socket.on("echo", (data, ack) => {
      if (typeof ack === "function") ack(data);
    });

    socket.on("join", (room, ack) => {
      socket.join(room);
      if (typeof ack === "function") ack({ room, rooms: [...socket.rooms] });
    });

    socket.on("say", (data, ack) => {
      const said = { room: data.room, text: data.text, seq: data.seq ?? null, from: socket.data.name ?? socket.id, node: name };
      io.to(data.room).emit("said", said);
      if (typeof ack === "function") ack({ ok: true });
    });

    socket.on("disconnect", (reason) => {
      state.disconnects.push({ sid: socket.id, name: socket.data.name ?? null, reason });
      log(`disconnect ${socket.id} (${socket.data.name ?? "?"}): ${reason}`);
    });
  });
}

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString("utf8");
  return text ? JSON.parse(text) : {};
}

function reply(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

async function control(req, res) {
  const url = new URL(req.url, "http://localhost");
  if (req.method === "GET" && url.pathname === "/control/state") {
    return reply(res, 200, state);
  }
  if (req.method === "POST" && url.pathname === "/control/refuse") {
    const body = await readJson(req);
    state.refusing = Boolean(body.refuse);
    return reply(res, 200, { refusing: state.refusing });
  }
  if (req.method === "POST" && url.pathname === "/control/emit") {
    const body = await readJson(req);
    io.to(body.room).emit(body.event, body.data);
    return reply(res, 200, { ok: true });
  }
  return reply(res, 404, { error: "not found" });
}

// A graceful stop: io.close() disconnects every socket with "server shutting down", a
// recoverable reason, so the adapter persists each session; it does not await that SET,
// so wait until Redis has answered every pending command before exiting.
let stopping = false;
async function shutdown() {
  if (stopping) return;
  stopping = true;
  try {
    if (io !== null) await io.close();
    if (redis.isOpen) await redis.close();
  } finally {
    process.exit(0);
  }
}

for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, shutdown);
for (const event of ["end", "close", "error"]) process.stdin.on(event, shutdown);
process.stdin.resume();

main().catch((err) => {
  process.stderr.write(`cluster node ${name} failed to start: ${err && err.stack}\n`);
  process.exit(1);
});
