"""The Socket.IO endpoint ``/socket.io/``: python-socketio on the same aiohttp app.

A thin adapter between python-socketio's ``AsyncServer`` and the hub, like
:mod:`fake_server.ws_endpoint` for raw WebSockets: the same hub (rooms, one event log,
one dedupe table, presence, tokens), the same fault state, the same counters.  The
binding is described in the "Socket.IO binding" section of ``docs/protocol.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Coroutine, Sequence
from typing import Any

from aiohttp import web
from engineio import packet as eio_packet
from socketio.exceptions import ConnectionRefusedError as SioRefused

from .auth import AuthFailure, Principal
from .config import ServerConfig
from .errors import CloseReason, ErrorCode
from .faults import FaultState, Rejection
from .handshake import bearer_token, closed_as, query_token, refusal, retry_reason, unavailable
from .hub import Connection, Hub
from .peer import QueuedPeer, QueueLimits
from .sio_engine import EngineWebSocket, SioServer, quiet_logger
from .sio_peer import SioPeer
from .sio_requests import handle_event
from .stats import Counters, LatencyStats

__all__ = ["SioEndpoint"]

log = logging.getLogger("fake_server.sio")

# Where the handshake request keeps a rejection for the connect handler (aiohttp >= 3.13
# wants typed keys; older versions take a string).
_REJECTION_KEY: Any = (
    web.RequestKey("fake_server.rejection", Rejection)
    if hasattr(web, "RequestKey")
    else "fake_server.rejection"
)


_ENGINE_BACKLOG = 16
"""Packets engine.io may hold for one session before our writer waits."""


class SioEndpoint:
    """Serves Socket.IO for one hub; owns its per-connection tasks."""

    def __init__(
        self,
        hub: Hub,
        *,
        config: ServerConfig,
        faults: FaultState,
        counters: Counters,
        latency: LatencyStats,
    ) -> None:
        self._hub = hub
        self._config = config
        self._faults = faults
        self._counters = counters
        self._latency = latency
        self._peers: dict[str, tuple[SioPeer, Connection]] = {}
        self._websockets: dict[str, EngineWebSocket] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: dict[str, asyncio.Task[None]] = {}
        self._monitor: asyncio.Task[None] | None = None
        self._unconnected: dict[str, float] = {}
        """engine.io sessions not (yet) connected to the namespace: when first seen."""
        self.sio = SioServer(
            self._on_event,
            self._late_connect,
            async_mode="aiohttp",
            ping_interval=config.ping_interval,
            ping_timeout=config.ping_timeout,
            max_http_buffer_size=config.max_message_size,
            monitor_clients=False,  # _heartbeat does it, and knows about pauses
            serializer=config.socketio_serializer,
            logger=quiet_logger("fake_server.sio.lib"),
            engineio_logger=quiet_logger("fake_server.sio.engine"),
        )
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        eio = self.sio.eio
        # engine.io would run each incoming message in a task of its own: a flood then
        # piles up tasks without bound, ahead of every other client's.  Handle them in
        # the connection's reader instead (our handlers never block), in arrival order.
        eio.async_handlers = False
        # Background tasks engine.io starts (per-socket ping timers) belong to us.
        eio.start_background_task = self._spawn
        # A per-server copy of the driver table, with our WebSocket wrapper.
        eio._async = {**eio._async, "websocket": self._make_websocket}

    def __len__(self) -> int:
        """Open engine.io sessions, Socket.IO-connected or not."""
        return len(self.sio.eio.sockets)

    # -- lifecycle -----------------------------------------------------------------------

    def attach(self, app: web.Application) -> None:
        """Route ``/socket.io/`` of ``app`` to this endpoint."""
        for method in ("GET", "POST", "OPTIONS"):
            app.router.add_route(method, "/socket.io/", self.handle)

    def start(self) -> None:
        if self._monitor is None:
            self._monitor = asyncio.create_task(self._heartbeat(), name="sio-heartbeat")

    async def shutdown(self) -> None:
        """Cut what is left and end every task (call after :meth:`close_all`)."""
        for ws in list(self._websockets.values()):
            ws.abort()
        await self._wait_websockets(1.0)
        for peer, conn in list(self._peers.values()):
            self._forget(peer, conn, "server stopped")
        for socket in self.sio.eio.sockets.values():
            socket.closed = True
            socket.queue.put_nowait(None)  # ends a pending long poll
        self.sio.eio.sockets.clear()
        tasks = list(self._tasks)
        if self._monitor is not None:
            tasks.append(self._monitor)
            self._monitor = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, target: Any, *args: Any, **kwargs: Any) -> asyncio.Task[Any]:
        return self._track(target(*args, **kwargs))

    def _track(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _make_websocket(self, handler: Any, server: Any) -> EngineWebSocket:
        return EngineWebSocket(
            handler,
            server,
            faults=self._faults,
            latency=self._latency,
            registry=self._websockets,
            on_dead=self._dead,
        )

    # -- the HTTP handler ----------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """``/socket.io/``: faults on the engine.io handshake, then engine.io."""
        handshake = request.method == "GET" and "sid" not in request.query
        if handshake:
            self._counters.bump("handshakes")
        # A paused server lets requests hang, like a frozen process would.
        await self._faults.wait_running()
        if handshake:
            rejection = self._faults.take_rejection()
            if rejection is not None:
                self._counters.bump("handshakes_rejected")
                if rejection.status < 1000:
                    return refusal(rejection, "socket.io")
                request[_REJECTION_KEY] = rejection
            if (wait := self._hub.storage.available()) is not None:
                self._counters.bump("handshakes_rejected")
                return unavailable(wait, "socket.io")
        if not await self._body_arrived(request):
            return web.Response(status=408, text="request body timed out\n")
        response: web.StreamResponse = await self.sio.handle_request(request)
        socket = self.sio.eio.sockets.get(request.query.get("sid"))
        if socket is not None and socket.closed:
            # A long-polling client closed its session: engine.io would leave the
            # pending poll hanging for ping_interval + ping_timeout.  End it.
            socket.queue.put_nowait(None)
        await self._faults.wait_running()  # a long-poll answer waits out a pause too
        return response

    async def _body_arrived(self, request: web.Request) -> bool:
        """Wait ``header_timeout`` for a long-polling POST's body; False: connection cut.

        engine.io reads ``Content-Length`` bytes and would wait for ever for a body that
        never comes (aiohttp's ``keepalive_timeout`` only covers the request head).
        """
        length = request.content_length
        if request.method != "POST" or not length or length > self._config.max_message_size:
            return True  # engine.io refuses an oversized body without reading it
        try:
            async with asyncio.timeout(self._config.header_timeout):
                await request.content.wait_eof()
        except TimeoutError:
            self._counters.bump("body_timeouts")
            log.info("cutting a POST from %s: body not sent in time", request.remote)
            if request.transport is not None:
                request.transport.abort()
            return False
        return True

    # -- connect / disconnect ------------------------------------------------------------

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any) -> None:
        try:
            principal = self._authenticate(environ, auth)
            eio_sid = self.sio.manager.eio_sid_from_sid(sid, "/")
            request: web.Request = environ["aiohttp.request"]
            cfg = self._config
            peer = SioPeer(
                self,
                sid=sid,
                eio_sid=eio_sid,
                faults=self._faults,
                counters=self._counters,
                limits=QueueLimits(cfg.max_queued_frames, cfg.max_queued_bytes),
                close_timeout=cfg.close_timeout,
                remote=str(request.remote),
            )
            conn = self._hub.attach(peer, principal)
            self._peers[sid] = (peer, conn)
            writer = self._track(peer.run_writer())
            self._writers[sid] = writer
            writer.add_done_callback(lambda _: self._writers.pop(sid, None))
            rejection: Rejection | None = request.get(_REJECTION_KEY)
            if rejection is not None:
                peer.close(rejection.status, retry_reason(rejection.retry_after))
        except SioRefused:
            raise
        except Exception:
            self._counters.bump("errors")
            log.exception("socket.io connect handler failed")
            raise SioRefused(ErrorCode.INTERNAL.value) from None

    def _late_connect(self, eio_sid: str) -> None:
        self._counters.bump("handshakes_abandoned")
        log.debug("socket.io connect for closed session %s dropped", eio_sid)

    def _authenticate(self, environ: dict[str, Any], auth: Any) -> Principal:
        """The handshake's principal, or :class:`SioRefused` with the seed's message."""
        token: object = None
        if isinstance(auth, dict) and auth.get("token") not in (None, ""):
            token = auth["token"]
        elif (header := environ.get("HTTP_AUTHORIZATION")) is not None:
            token = bearer_token(header)
        else:
            allowed = self._config.allow_query_token
            token = query_token(environ.get("QUERY_STRING", ""), allowed=allowed) or None
        if token is None:
            self._counters.bump("auth_failures")
            log.info("socket.io connect refused: no token")
            raise SioRefused(CloseReason.AUTHENTICATION_REQUIRED.value)
        try:
            principal = self._hub.authenticate(token)
        except AuthFailure as exc:
            raise SioRefused(exc.code.value) from None
        if principal.user_id in self._hub.disabled:
            self._counters.bump("auth_failures")
            log.info("socket.io connect refused: user %s disabled", principal.user_id)
            raise SioRefused(CloseReason.USER_DISABLED.value)
        return principal

    async def _on_disconnect(self, sid: str, reason: str) -> None:
        entry = self._peers.get(sid)
        if entry is not None:
            self._forget(entry[0], entry[1], reason)

    def _forget(self, peer: SioPeer, conn: Connection, why: str) -> None:
        if self._peers.pop(peer.sid, None) is None:
            return
        peer.disconnected = True
        by_client = why == self.sio.reason.CLIENT_DISCONNECT
        code, reason = closed_as(peer, (1000 if by_client else 1006, why))
        self._hub.detach(conn, code=code, reason=reason)
        writer = self._writers.get(peer.sid)
        if writer is not None and writer is not asyncio.current_task():
            writer.cancel()
        peer.finished.set()

    # -- SioLink (used by the peers' writers) ---------------------------------------------

    def is_connected(self, sid: str) -> bool:
        return bool(self.sio.manager.is_connected(sid, "/"))

    async def emit(self, sid: str, name: str, payload: Any) -> None:
        await self.sio.emit(name, payload, to=sid)

    async def ack(self, eio_sid: str, ack_id: int, payload: dict[str, Any]) -> None:
        await self.sio.send_ack(eio_sid, ack_id, payload)

    async def disconnect(self, sid: str, eio_sid: str) -> None:
        """Disconnect the namespace, then close the engine.io connection.

        Engine.io refuses every poll once a session is closed, even one that would fetch
        packets still queued, and a poll may return between the ``error`` event and the
        DISCONNECT (Python >= 3.12 resumes a poll sooner).  So, like the reference
        engine.io server, the CLOSE is queued behind the DISCONNECT and the session closes
        only after the client has fetched all three (a client that got the DISCONNECT
        without the CLOSE would make one more request, refused with HTTP 400).
        """
        await self.sio.disconnect(sid)
        socket = self.sio.eio.sockets.get(eio_sid)
        if socket is None or socket.closed or socket.closing:
            return
        socket.closing = True  # no PING behind the CLOSE
        socket.queue.put_nowait(eio_packet.Packet(eio_packet.CLOSE))
        with contextlib.suppress(TimeoutError):  # a client that stopped polling
            async with asyncio.timeout(self._config.close_timeout):
                await socket.queue.join()
        socket.closing = False
        await socket.close(wait=False, abort=True)  # the CLOSE is queued already
        self.sio.eio.sockets.pop(eio_sid, None)

    async def drained(self, eio_sid: str) -> None:
        """Return once engine.io's queue for ``eio_sid`` holds fewer than 16 packets."""
        # engine.io has no drain event: poll, only while the client is behind.
        while (socket := self.sio.eio.sockets.get(eio_sid)) is not None:
            if socket.closed or socket.queue.qsize() < _ENGINE_BACKLOG:
                return
            await asyncio.sleep(0.005)

    def abort(self, eio_sid: str) -> None:
        """Cut the engine.io transport without a CLOSE packet."""
        ws = self._websockets.get(eio_sid)
        if ws is not None:
            ws.abort()
            return
        socket = self.sio.eio.sockets.pop(eio_sid, None)
        if socket is not None:  # long-polling: forget the session, end the pending poll
            self._track(socket.close(wait=False, abort=True, reason="transport close"))
            socket.queue.put_nowait(None)

    # -- events ----------------------------------------------------------------------------

    def _on_event(self, sid: str, ack_id: int | None, data: list[Any]) -> Awaitable[None] | None:
        entry = self._peers.get(sid)
        if entry is None:
            return None
        if entry[0].close_requested is not None:
            # Not carried out after our close (see WsEndpoint._read_loop).
            self._counters.bump("frames_after_close")
            return None
        handle_event(self._hub, entry[0], entry[1], ack_id, data)
        return self._hub.backlog(entry[1])

    # -- faults ------------------------------------------------------------------------------

    def owns(self, peer: object) -> bool:
        return isinstance(peer, SioPeer)

    def close_all(self, code: int, reason: str) -> list[QueuedPeer[Any]]:
        """Queue ``error`` + disconnect on every Socket.IO connection."""
        peers: list[QueuedPeer[Any]] = [peer for peer, _ in self._peers.values()]
        for peer in peers:
            peer.close(code, reason)
        return peers

    def abort_all(self) -> list[QueuedPeer[Any]]:
        """Cut every engine.io transport at once (the clients see a transport error)."""
        peers: list[QueuedPeer[Any]] = [peer for peer, _ in self._peers.values()]
        for peer in peers:
            peer.abort()
        for eio_sid in list(self.sio.eio.sockets):
            self.abort(eio_sid)
        return peers

    async def wait_finished(self, peers: Sequence[QueuedPeer[Any]], within: float) -> bool:
        """Wait until ``peers`` are disconnected, their writers done and WebSockets closed.

        A peer is disconnected as soon as its Socket.IO DISCONNECT is queued; its writer
        ends once engine.io has handed that packet and its CLOSE to the client (a
        long-polling client fetches them with its next poll, which may come after the
        poll that took the ``error`` event).  Until then the session must stay.
        """
        try:
            async with asyncio.timeout(within):
                for peer in peers:
                    await peer.finished.wait()
                    writer = self._writers.get(peer.sid) if isinstance(peer, SioPeer) else None
                    if writer is not None:
                        await asyncio.wait([writer])
                    # Only the peers' own WebSockets: others may be connecting meanwhile.
                    ws = self._websockets.get(peer.eio_sid) if isinstance(peer, SioPeer) else None
                    if ws is not None:
                        await ws.done.wait()
        except TimeoutError:
            return False
        return True

    async def close_sessions(self, within: float) -> None:
        """Close engine.io sessions that never connected to the namespace."""
        connected = {peer.eio_sid for peer, _ in self._peers.values()}
        for eio_sid in list(self.sio.eio.sockets):
            if eio_sid not in connected:
                try:
                    async with asyncio.timeout(within):
                        await self.sio.eio.disconnect(eio_sid)
                except TimeoutError:
                    self.abort(eio_sid)

    async def _wait_websockets(self, within: float) -> bool:
        try:
            async with asyncio.timeout(within):
                for ws in list(self._websockets.values()):
                    await ws.done.wait()
        except TimeoutError:
            return False
        return True

    def resumed(self) -> None:
        """After a pause: every ping in flight gets a fresh ``ping_timeout``."""
        now = time.time()
        for socket in self.sio.eio.sockets.values():
            if socket.last_ping:
                socket.last_ping = now
        self._unconnected.clear()  # auth deadlines start over too

    # -- heartbeat -------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        """Cut sessions whose PONG is ``ping_timeout`` late (engine.io sends the PINGs)."""
        cfg = self._config
        period = max(0.005, min(cfg.ping_timeout, cfg.ping_interval) / 4)
        while True:
            await asyncio.sleep(period)
            await self._faults.wait_running()
            now = time.time()
            for eio_sid, socket in list(self.sio.eio.sockets.items()):
                if socket.closed:
                    self.sio.eio.sockets.pop(eio_sid, None)
                elif _late(socket.last_ping, now, cfg):
                    self._dead(eio_sid)
            self._connect_deadlines(time.monotonic())

    def _connect_deadlines(self, now: float) -> None:
        """Cut engine.io sessions with no Socket.IO CONNECT ``auth_timeout`` after opening.

        The CONNECT carries the token: without this, a client that only answers PINGs
        would keep an unauthenticated session for ever (``/ws`` closes 4001 instead).
        """
        connected = {peer.eio_sid for peer, _ in self._peers.values()}
        waiting: dict[str, float] = {}
        for eio_sid, socket in self.sio.eio.sockets.items():
            if eio_sid in connected or socket.closed or socket.closing:
                continue
            since = self._unconnected.get(eio_sid, now)
            if now - since < self._config.auth_timeout:
                waiting[eio_sid] = since
                continue
            self._counters.bump("auth_failures")
            log.info("closing session %s: no Socket.IO connect in time", eio_sid)
            self.abort(eio_sid)
        self._unconnected = waiting

    def _dead(self, eio_sid: str) -> None:
        """A session's PONG is ``ping_timeout`` late: cut it, once."""
        ws = self._websockets.get(eio_sid)
        if ws is not None and ws.aborted:
            return
        self._counters.bump("heartbeat_timeouts")
        log.info("no pong from session %s within %.3fs", eio_sid, self._config.ping_timeout)
        entry = self._peers.get(self.sio.manager.sid_from_eio_sid(eio_sid, "/"))
        if entry is not None:
            entry[0].abort()
        else:
            self.abort(eio_sid)


def _late(last_ping: float | None, now: float, cfg: ServerConfig) -> bool:
    return bool(last_ping) and now - (last_ping or 0.0) > cfg.ping_timeout
