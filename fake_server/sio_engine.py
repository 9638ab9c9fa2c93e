"""python-socketio / python-engineio plumbing for the Socket.IO endpoint.

Everything that leans on the libraries' internals is kept here, small and commented:

* :class:`SioServer` overrides ``AsyncServer._handle_event`` so that an event handler
  learns whether the client asked for an ack (the public handler API hides the packet
  id) and so that events are handled in arrival order, inline, like raw frames; and
  ``_handle_connect`` so that a CONNECT read after its session closed is dropped.
* :class:`EngineWebSocket` replaces engine.io's aiohttp WebSocket wrapper (through the
  per-server ``_async`` driver table) to give the fault controls a grip on the
  transport: pause (no reads, no writes, no pings), abort (cut TCP), and ping
  round-trip times for ``/health``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import socketio
from aiohttp import web
from socketio import packet as sio_packet

from .faults import FaultState
from .stats import LatencyStats

__all__ = ["EngineWebSocket", "SioServer", "quiet_logger"]

EventHandler = Callable[[str, "int | None", list[Any]], "Awaitable[None] | None"]


def quiet_logger(name: str) -> logging.Logger:
    """A logger for the libraries, pinned at WARNING.

    engine.io logs every packet at INFO, and the Socket.IO CONNECT packet carries the
    ``auth`` payload (the token): it must never reach a log.
    """
    logger = logging.getLogger(name)
    logger.setLevel(logging.WARNING)
    return logger


class SioServer(socketio.AsyncServer):  # type: ignore[misc]
    """``socketio.AsyncServer`` whose events go to one synchronous callback.

    ``on_event(sid, ack_id, data)`` may return an awaitable: the reader awaits it before
    it reads the next packet (backpressure).  It gets ``data = [event name, *arguments]`` and
    ``ack_id`` (``None`` when the client gave no callback).  Acks are sent by
    :meth:`send_ack`, never from a handler's return value.
    """

    def __init__(
        self, on_event: EventHandler, on_late_connect: Callable[[str], None], **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._on_event = on_event
        self._on_late_connect = on_late_connect

    async def _handle_connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        if eio_sid not in self.environ:
            # The engine.io session closed (its disconnect ran, a restart closing the
            # sessions not yet connected) while this CONNECT was on its way: frames
            # already read are still handed over, and python-socketio would look the
            # session's environ up and log a KeyError.  Nobody is left to answer.
            self._on_late_connect(eio_sid)
            return
        await super()._handle_connect(eio_sid, namespace, data)

    async def _handle_event(
        self, eio_sid: str, namespace: str | None, id: int | None, data: Any
    ) -> None:
        namespace = namespace or "/"
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        if sid is None or not self.manager.is_connected(sid, namespace):
            return
        backlog = self._on_event(sid, id, data if isinstance(data, list) else [data])
        if backlog is not None:  # the connection's requests wait for Redis: read no more
            await backlog

    async def send_ack(self, eio_sid: str, ack_id: int, payload: dict[str, Any]) -> None:
        pkt = self.packet_class(sio_packet.ACK, namespace="/", id=ack_id, data=[payload])
        await self.eio.send(eio_sid, pkt.encode())


class EngineWebSocket:
    """engine.io's aiohttp WebSocket wrapper, with fault hooks.

    engine.io builds one per WebSocket (``factory(handler, server)``) and drives it
    with ``send``/``wait``/``close``.
    """

    def __init__(
        self,
        handler: Callable[[EngineWebSocket], Awaitable[None]],
        server: Any,
        *,
        faults: FaultState,
        latency: LatencyStats,
        registry: dict[str, EngineWebSocket],
        on_dead: Callable[[str], None],
    ) -> None:
        self._handler = handler
        self._server = server
        self._faults = faults
        self._latency = latency
        self._registry = registry
        self._on_dead = on_dead
        self._sock: web.WebSocketResponse | None = None
        self._transport: asyncio.Transport | None = None
        self._ping_sent: float | None = None
        self._loop = asyncio.get_running_loop()
        self._received = self._loop.time()
        """Loop time of the last message from the peer (or of the upgrade)."""
        self.sid: str = getattr(handler, "__self__", None).sid  # type: ignore[union-attr]
        self.done = asyncio.Event()
        self.aborted = False

    async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
        request: web.Request = environ["aiohttp.request"]
        self._sock = web.WebSocketResponse(max_msg_size=self._server.max_http_buffer_size)
        await self._sock.prepare(request)
        self._transport = request.transport
        self._registry[self.sid] = self
        try:
            await self._handler(self)
        finally:
            if self._registry.get(self.sid) is self:
                del self._registry[self.sid]
            self.done.set()
        return self._sock

    def abort(self) -> None:
        """Cut the TCP connection: the client sees a transport error, no close."""
        self.aborted = True
        if self._transport is not None:
            self._transport.abort()

    def ping_overdue(self) -> bool:
        """Whether the peer is presumed dead: a PING without its PONG, and either
        ``ping_timeout`` passed since that PING or the peer has been silent for
        ``ping_interval + ping_timeout`` (engine.io's read timeout, which can end a
        moment before the PING is ``ping_timeout`` old)."""
        sent = self._ping_sent
        if sent is None:
            return False
        now = self._loop.time()
        server = self._server
        silent = now - self._received >= server.ping_interval + server.ping_timeout - 0.001
        return bool(silent or now - sent >= server.ping_timeout)

    async def close(self) -> None:
        assert self._sock is not None
        if self.aborted:
            return
        if self.ping_overdue():
            # engine.io's read timeout (ping_interval + ping_timeout of silence) ends
            # the same moment the PONG is ping_timeout late: the peer is presumed dead,
            # cut the connection instead of closing it cleanly (like /ws does).
            self._on_dead(self.sid)
            return
        await self._sock.close()

    async def send(self, message: str | bytes) -> None:
        assert self._sock is not None
        await self._faults.wait_running()
        if self.aborted:
            raise OSError("aborted")
        if message == "2":  # an engine.io PING: time its PONG
            self._ping_sent = self._loop.time()
        if isinstance(message, bytes):
            await self._sock.send_bytes(message)
        else:
            await self._sock.send_str(message)

    async def wait(self) -> str | bytes:
        assert self._sock is not None
        await self._faults.wait_running()
        msg = await self._sock.receive()
        self._received = self._loop.time()
        # A frozen server does not look at what arrived while it was frozen.
        await self._faults.wait_running()
        if self.aborted:
            # Cut: frames aiohttp had read before are not carried out (as on /ws), so
            # nothing is committed whose ack can no longer be sent.
            raise OSError("aborted")
        data: object = msg.data
        if not isinstance(data, str | bytes):
            raise OSError("websocket closed")
        if data == "3" and self._ping_sent is not None:
            self._latency.add(self._loop.time() - self._ping_sent)
            self._ping_sent = None
        return data
