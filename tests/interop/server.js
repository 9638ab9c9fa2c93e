// The Node.js socket.io 4.8 reference server that tests/interop runs rtclient against.
//
//   node server.js [--recovery] [--max-disconnection-ms=N] [--skip-middlewares]
//
// (or RECOVERY=1, MAX_DISCONNECTION_MS=N, SKIP_MIDDLEWARES=1 in the environment).
// Listens on 127.0.0.1, port 0, and prints {"port": N} as its first stdout line; logs go
// to stderr. Exits on SIGTERM / SIGINT and when its stdin closes (the test process died).
//
// Socket.IO (namespace "/"), behind an auth middleware that accepts the token "good",
// refuses "busy" twice with connect_error "server busy" then accepts it, refuses "coded"
// with "not today" and data {code: 401} (anything else: connect_error "INVALID_TOKEN"):
//   register {name}          -> socket.data.name = name; ack {sid, pid, recovered}
//   echo <any>               -> ack with the data as received
//   join <room>              -> server-side room join; ack {room, rooms}
//   say {room, text}         -> io.to(room).emit("said", {room, text, from}); ack {ok}
//   stream {n, every, room?, id?} -> ack {id}, then n `tick` events {stream, seq}
//                               (seq 1..n) to the room, or to this socket, every `every` ms
//                               (every: 0 -> only when /control/advance says so)
//   kick                     -> ack, then socket.disconnect(true) (a DISCONNECT packet)
//   drop                     -> ack, then socket.conn.close(): the transport closes with
//                               no DISCONNECT packet, so connection state recovery applies
//
// HTTP control endpoints (JSON), on the same port:
//   GET  /control/state             -> what the server saw (`state` below: auth attempts,
//                                      connections, disconnects, echoes, event log, streams)
//   POST /control/drop {name, burst?, stream?}
//        close the transport of every socket registered as `name`; then, with `stream`,
//        emit that stream's next `burst` ticks at once, while the client is surely away
//   POST /control/advance {stream, count} -> emit that stream's next `count` ticks now
//   POST /control/emit {room, event, data} -> io.to(room).emit(event, data)
//   GET  /control/session?name=N    -> {pid, stored, expired} for N's last session
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");

function option(flag, envName) {
  const prefix = `--${flag}=`;
  for (const arg of process.argv.slice(2)) {
    if (arg === `--${flag}`) return "1";
    if (arg.startsWith(prefix)) return arg.slice(prefix.length);
  }
  return process.env[envName];
}

const truthy = (value) => value !== undefined && !["", "0", "false", "off", "no"].includes(value);
const recovery = truthy(option("recovery", "RECOVERY"));
const maxDisconnectionDuration = Number(option("max-disconnection-ms", "MAX_DISCONNECTION_MS") ?? 120000);
const skipMiddlewares = truthy(option("skip-middlewares", "SKIP_MIDDLEWARES"));

const state = {
  options: { recovery, maxDisconnectionDuration, skipMiddlewares },
  authAttempts: {}, // token -> how many times the middleware saw it
  connections: [], // {sid, pid, recovered} per "connection" event
  disconnects: [], // {sid, name, reason}
  echoes: [], // the data of every echo, as received
  said: [], // {room, text, from}
  log: [], // {sid, event}: every client event handled, in order
  streams: {}, // id -> {target, n, emitted, whileAway}
  pids: {}, // name -> the pid of its latest session
};

const server = http.createServer((req, res) => {
  control(req, res).catch((err) => reply(res, 500, { error: String(err && err.stack) }));
});

const io = new Server(server, {
  serveClient: false,
  connectionStateRecovery: recovery ? { maxDisconnectionDuration, skipMiddlewares } : undefined,
});
const nsp = io.of("/");

io.use((socket, next) => {
  const token = socket.handshake.auth && socket.handshake.auth.token;
  const key = typeof token === "string" ? token : String(token);
  state.authAttempts[key] = (state.authAttempts[key] || 0) + 1;
  if (token === "good") return next();
  if (token === "busy") {
    // A refusal that is not about the credentials: the first two attempts only.
    return next(state.authAttempts[key] <= 2 ? new Error("server busy") : undefined);
  }
  if (token === "coded") {
    const err = new Error("not today");
    err.data = { code: 401 }; // a refusal of the credentials said in err.data only
    return next(err);
  }
  return next(new Error("INVALID_TOKEN"));
});

const streams = new Map(); // id -> {emitNext}

io.on("connection", (socket) => {
  state.connections.push({ sid: socket.id, pid: socket.pid ?? null, recovered: socket.recovered });
  if (socket.data && socket.data.name) state.pids[socket.data.name] = socket.pid ?? null;

  socket.onAny((event) => state.log.push({ sid: socket.id, event }));

  socket.on("register", (data, ack) => {
    socket.data.name = data && data.name;
    state.pids[socket.data.name] = socket.pid ?? null;
    if (typeof ack === "function") ack({ sid: socket.id, pid: socket.pid ?? null, recovered: socket.recovered });
  });

  socket.on("echo", (data, ack) => {
    state.echoes.push(data);
    if (typeof ack === "function") ack(data);
  });

  socket.on("join", (room, ack) => {
    socket.join(room);
    if (typeof ack === "function") ack({ room, rooms: [...socket.rooms] });
  });

  socket.on("say", (data, ack) => {
    const said = { room: data.room, text: data.text, from: socket.data.name ?? socket.id };
    state.said.push(said);
    io.to(data.room).emit("said", said);
    if (typeof ack === "function") ack({ ok: true });
  });

  socket.on("stream", (data, ack) => {
    const id = String(data.id ?? `s${streams.size + 1}`);
    const n = Number(data.n);
    const every = Number(data.every ?? 10);
    const room = data.room ?? null;
    const record = { target: room ?? socket.id, n, emitted: 0, whileAway: 0 };
    state.streams[id] = record;
    const present = () =>
      room === null ? socket.connected : (nsp.adapter.rooms.get(room)?.size ?? 0) > 0;
    let timer = null;
    const emitNext = () => {
      if (record.emitted >= n) return;
      record.emitted += 1;
      if (!present()) record.whileAway += 1;
      const tick = { stream: id, seq: record.emitted };
      if (room === null) socket.emit("tick", tick);
      else io.to(room).emit("tick", tick);
      if (record.emitted >= n) {
        clearInterval(timer);
        streams.delete(id);
      }
    };
    streams.set(id, { emitNext });
    if (typeof ack === "function") ack({ id });
    if (every > 0) timer = setInterval(emitNext, every); // 0: only /control/advance emits
  });

  socket.on("kick", (ack) => {
    if (typeof ack === "function") ack({ ok: true });
    socket.disconnect(true);
  });

  socket.on("drop", (ack) => {
    if (typeof ack === "function") ack({ ok: true });
    setImmediate(() => socket.conn.close());
  });

  socket.on("disconnect", (reason) => {
    state.disconnects.push({ sid: socket.id, name: socket.data.name ?? null, reason });
  });
});

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

function socketsNamed(name) {
  return [...nsp.sockets.values()].filter((s) => s.data && s.data.name === name);
}

async function control(req, res) {
  const url = new URL(req.url, "http://localhost");
  if (req.method === "GET" && url.pathname === "/control/state") {
    return reply(res, 200, state);
  }
  if (req.method === "POST" && url.pathname === "/control/drop") {
    const body = await readJson(req);
    const targets = socketsNamed(body.name);
    for (const socket of targets) socket.conn.close(); // synchronous: it has left its rooms
    let burst = 0;
    const stream = body.stream !== undefined ? streams.get(String(body.stream)) : undefined;
    if (stream) {
      for (let i = 0; i < Number(body.burst ?? 0); i += 1) {
        stream.emitNext();
        burst += 1;
      }
    }
    return reply(res, 200, { dropped: targets.length, burst });
  }
  if (req.method === "POST" && url.pathname === "/control/advance") {
    const body = await readJson(req);
    const stream = streams.get(String(body.stream));
    if (!stream) return reply(res, 404, { error: `no running stream ${body.stream}` });
    for (let i = 0; i < Number(body.count ?? 1); i += 1) stream.emitNext();
    return reply(res, 200, { ok: true });
  }
  if (req.method === "POST" && url.pathname === "/control/emit") {
    const body = await readJson(req);
    io.to(body.room).emit(body.event, body.data);
    return reply(res, 200, { ok: true });
  }
  if (req.method === "GET" && url.pathname === "/control/session") {
    const pid = state.pids[url.searchParams.get("name")] ?? null;
    const sessions = nsp.adapter.sessions; // the in-memory adapter's stored sessions
    const session = pid !== null && sessions ? sessions.get(pid) : undefined;
    const expired =
      session === undefined || session.disconnectedAt + maxDisconnectionDuration < Date.now();
    return reply(res, 200, { pid, stored: session !== undefined, expired });
  }
  return reply(res, 404, { error: "not found" });
}

function shutdown() {
  // io.close() disconnects every client; exit at once rather than wait for lingering sockets.
  io.close();
  process.exit(0);
}

for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, shutdown);
for (const event of ["end", "close", "error"]) process.stdin.on(event, shutdown);
process.stdin.resume();

server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
  process.stderr.write(`interop server: ${JSON.stringify(state.options)}\n`);
});
