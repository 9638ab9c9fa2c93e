"""The raw WebSocket endpoint ``GET /ws``: a thin adapter between aiohttp and the hub.

It answers the upgrade (or refuses it when a fault says so), authenticates the peer
(header, first ``auth`` message, or query token when allowed), then feeds every frame
to the hub.  Control frames are handled here: ``autoping`` is off so that the server
can time its own pings (RTT for ``/health``) and so that a paused server really stops
answering pings.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from .auth import AuthFailure, Principal
from .config import ServerConfig
from .errors import CloseCode, CloseReason
from .faults import FaultState
from .handshake import bearer_token, closed_as, query_token, refusal, retry_reason, unavailable
from .hub import BASE_FEATURES, Connection, Hub
from .peer import QueuedPeer, QueueLimits
from .stats import Counters, LatencyStats
from .ws_peer import WsPeer

__all__ = ["WsEndpoint"]

MSGPACK = "rtclient.v1.msgpack"
SUBPROTOCOLS = ("rtclient.v1.json", MSGPACK)

log = logging.getLogger("fake_server.ws")


@dataclass(frozen=True, slots=True)
class _Frame:
    """A data frame (text or binary) from the peer."""

    data: str | bytes


class WsEndpoint:
    """Serves ``/ws`` for one hub and keeps track of every open WebSocket."""

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
        self._peers: set[WsPeer] = set()

    def __len__(self) -> int:
        return len(self._peers)

    # -- control from the server ---------------------------------------------------------

    def attach(self, app: web.Application) -> None:
        """Route ``GET /ws`` of ``app`` to this endpoint."""
        app.router.add_get("/ws", self.handle)

    def start(self) -> None:
        """Nothing to start: each connection's handler owns its tasks."""

    def resumed(self) -> None:
        """Nothing to do: each heartbeat re-arms its deadline after a pause itself."""

    def owns(self, peer: object) -> bool:
        return isinstance(peer, WsPeer)

    def close_all(self, code: int, reason: str) -> list[QueuedPeer[Any]]:
        """Queue a close frame on every open WebSocket, authenticated or not."""
        peers: list[QueuedPeer[Any]] = list(self._peers)
        for peer in peers:
            peer.close(code, reason)
        return peers

    def abort_all(self) -> list[QueuedPeer[Any]]:
        """Cut every TCP connection at once, without a close frame."""
        peers: list[QueuedPeer[Any]] = list(self._peers)
        for peer in peers:
            peer.abort()
        return peers

    @staticmethod
    async def wait_finished(peers: Sequence[QueuedPeer[Any]], within: float) -> bool:
        """Wait until the handlers of ``peers`` are done; False after ``within`` s."""
        try:
            async with asyncio.timeout(within):
                for peer in peers:
                    await peer.finished.wait()
        except TimeoutError:
            return False
        return True

    async def close_sessions(self, within: float) -> None:
        """Nothing to do: every open WebSocket has a peer, closed by :meth:`close_all`."""

    async def shutdown(self) -> None:
        """Nothing to do: each connection's handler owns its tasks and ends them."""

    # -- the handler ---------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp handler of ``GET /ws``."""
        self._counters.bump("handshakes")
        # A paused server lets new handshakes hang, like a frozen process would.
        await self._faults.wait_running()
        rejection = self._faults.take_rejection()
        if rejection is not None and rejection.status < 1000:
            self._counters.bump("handshakes_rejected")
            return refusal(rejection, "websocket")
        if (wait := self._hub.storage.available()) is not None:
            self._counters.bump("handshakes_rejected")
            return unavailable(wait, "websocket")
        cfg = self._config
        ws = web.WebSocketResponse(
            autoping=False,
            max_msg_size=cfg.max_message_size,
            timeout=cfg.close_timeout,
            protocols=SUBPROTOCOLS,
            compress=cfg.compression,
        )
        try:
            await ws.prepare(request)
        except ConnectionResetError:
            # The client left during the upgrade: nothing to serve.  ``ws`` may be half
            # prepared (headers begun, no WebSocket writer), and aiohttp would close it
            # after we return and log "Call .prepare() first"; a plain response instead
            # fails to write on the dead transport, which aiohttp ignores quietly.
            self._counters.bump("handshakes_abandoned")
            log.debug("client %s left during the upgrade", request.remote)
            return web.Response(status=499)
        peer = WsPeer(
            ws,
            request.transport,
            faults=self._faults,
            counters=self._counters,
            limits=QueueLimits(cfg.max_queued_frames, cfg.max_queued_bytes),
            close_timeout=cfg.close_timeout,
            remote=str(request.remote),
            # The client's first offered subprotocol that we speak; none: JSON.
            codec="msgpack" if ws.ws_protocol == MSGPACK else "json",
        )
        self._peers.add(peer)
        writer = asyncio.create_task(peer.run_writer(), name=f"ws-writer {peer.remote}")
        heartbeat = asyncio.create_task(self._heartbeat(peer), name=f"ws-ping {peer.remote}")
        conn: Connection | None = None
        try:
            principal = await self._authenticate(request, peer)
            if principal is not None:
                conn = self._hub.attach(peer, principal, features=(*BASE_FEATURES, "batch"))
                if rejection is not None:
                    self._counters.bump("handshakes_rejected")
                    peer.close(rejection.status, retry_reason(rejection.retry_after))
                await self._read(peer, conn)
        except Exception:
            self._counters.bump("errors")
            log.exception("websocket handler for %s failed", peer.remote)
            peer.close(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            heartbeat.cancel()
            try:
                if peer.close_requested is not None and not peer.aborted:
                    # Let our close handshake finish (it is bounded by close_timeout).
                    await asyncio.wait({writer}, timeout=cfg.close_timeout + 1.0)
            finally:
                # Runs on cancellation too: the hub must forget the connection.
                writer.cancel()
                self._forget(peer, conn)
                await asyncio.gather(writer, heartbeat, return_exceptions=True)
        return ws

    def _forget(self, peer: WsPeer, conn: Connection | None) -> None:
        code, reason = closed_as(peer, (peer.ws.close_code, "closed by peer"))
        if conn is not None:
            self._hub.detach(conn, code=code, reason=reason)
        else:
            log.info("unauthenticated connection from %s closed code=%s", peer.remote, code)
        self._peers.discard(peer)
        peer.finished.set()

    # -- authentication ------------------------------------------------------------------

    async def _authenticate(self, request: web.Request, peer: WsPeer) -> Principal | None:
        """Return the principal, or close the peer (4001/4002) and return None."""
        token = bearer_token(request.headers.get("Authorization"))
        if token is None:
            token = query_token(request.query_string, allowed=self._config.allow_query_token)
        if token is None:
            token = await self._auth_message(peer)
            if token is None:
                return None
        try:
            return self._hub.authenticate(token)
        except AuthFailure as exc:
            peer.close(exc.close_code, exc.code.value)
            return None

    async def _auth_message(self, peer: WsPeer) -> str | None:
        """Wait for ``{"type": "auth", "payload": {"token": ...}}`` as the first frame."""
        try:
            async with asyncio.timeout(self._config.auth_timeout):
                frame = await self._receive(peer)
        except TimeoutError:
            frame = None
            reason = "auth timeout"
        else:
            reason = "first message is not auth"
        if frame is None and peer.ws.closed:
            return None
        token = _auth_token(frame.data) if frame is not None else None
        if token is None:
            self._counters.bump("auth_failures")
            log.info("closing %s: %s", peer.remote, reason)
            peer.close(CloseCode.UNAUTHORIZED, CloseReason.AUTHENTICATION_REQUIRED)
        return token

    # -- reading ---------------------------------------------------------------------------

    async def _read(self, peer: WsPeer, conn: Connection) -> None:
        """Run the read loop in a task the peer's writer may stop before it closes.

        aiohttp's ``close()`` called while another task waits in ``receive()`` closes the
        TCP connection at once, without reading the client's close: frames the client
        sent meanwhile are left unread, the kernel answers them with a reset, and the
        client may lose our close frame and the acks before it (a drain would look
        like a crash). So the writer stops this loop first, then closes, and aiohttp
        reads until the client's close (see :meth:`WsPeer._close`).
        """
        reader = asyncio.create_task(self._read_loop(peer, conn), name=f"ws-read {peer.remote}")
        peer.reader = reader
        try:
            await asyncio.wait({reader})
        finally:
            peer.reader = None
            if not reader.done():  # we are cancelled ourselves
                reader.cancel()
                await asyncio.wait({reader})
        if not reader.cancelled():
            reader.result()  # a failure of the loop is the handler's

    async def _read_loop(self, peer: WsPeer, conn: Connection) -> None:
        while (frame := await self._receive(peer)) is not None:
            if peer.close_requested is not None:
                # Our close is queued behind every ack we owe: what comes after it is
                # not carried out (nor acked), so the client sends it again elsewhere
                # and it is neither lost nor done twice (a drain, a restart).
                self._counters.bump("frames_after_close")
                continue
            self._hub.handle_frame(conn, frame.data, peer.codec)
            # A connection whose requests wait for Redis reads no more until they move.
            if (backlog := self._hub.backlog(conn)) is not None:
                await backlog
            # Frames already buffered are returned without a suspension point: yield,
            # so that one flooding connection cannot starve the others.
            await asyncio.sleep(0)

    async def _receive(self, peer: WsPeer) -> _Frame | None:
        """Return the next data frame, answering pings; None once the socket closes."""
        ws = peer.ws
        while True:
            await self._faults.wait_running()
            if ws.closed or peer.aborted:
                return None
            msg = await ws.receive()
            if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
                return _Frame(msg.data)
            if msg.type is WSMsgType.PING:
                peer.send_pong(msg.data)
            elif msg.type is WSMsgType.PONG:
                peer.pong_received(msg.data)
            else:
                if msg.type is WSMsgType.ERROR:
                    log.info("websocket error from %s: %s", peer.remote, msg.data)
                return None

    # -- heartbeat -------------------------------------------------------------------------

    async def _heartbeat(self, peer: WsPeer) -> None:
        """Ping every ``ping_interval``; abort the peer when a pong is ``ping_timeout`` late."""
        cfg = self._config
        loop = asyncio.get_running_loop()
        seq = 0
        while True:
            await asyncio.sleep(cfg.ping_interval)
            await self._faults.wait_running()
            seq += 1
            sent = loop.time()
            waiter = peer.send_ping(seq.to_bytes(8, "big"))
            deadline = sent + cfg.ping_timeout
            while not waiter.done():
                await asyncio.wait({waiter}, timeout=max(0.0, deadline - loop.time()))
                if waiter.done():
                    break
                if self._faults.paused:
                    # We are not reading while paused: the pong may be waiting unread.
                    await self._faults.wait_running()
                    deadline = loop.time() + cfg.ping_timeout
                    continue
                self._counters.bump("heartbeat_timeouts")
                log.info("no pong from %s within %.3fs, aborting", peer.remote, cfg.ping_timeout)
                peer.abort()
                return
            self._latency.add(waiter.result() - sent)


def _auth_token(data: str | bytes) -> str | None:
    if not isinstance(data, str):
        return None
    try:
        obj = json.loads(data)
    except ValueError:
        return None
    if not isinstance(obj, dict) or obj.get("type") != "auth":
        return None
    payload = obj.get("payload")
    token = payload.get("token") if isinstance(payload, dict) else None
    return token if isinstance(token, str) and token else None
