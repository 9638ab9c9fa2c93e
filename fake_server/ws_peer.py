"""A :class:`~fake_server.hub.Peer` over an aiohttp ``WebSocketResponse``.

Every outgoing frame (envelopes, pings, pongs, the close frame) goes through the
bounded queue of :class:`~fake_server.peer.QueuedPeer`; this module only writes
frames.  aiohttp errors stay inside it (and the base class's writer).
"""

from __future__ import annotations

import asyncio
import enum
import json
from dataclasses import dataclass
from typing import Any

import msgpack
from aiohttp import web

from .faults import FaultState
from .peer import QueuedPeer, QueueLimits
from .stats import Counters

__all__ = ["WsPeer"]


class _Kind(enum.Enum):
    TEXT = enum.auto()
    BINARY = enum.auto()
    PING = enum.auto()
    PONG = enum.auto()
    CLOSE = enum.auto()


@dataclass(frozen=True, slots=True)
class _Outgoing:
    kind: _Kind
    text: str = ""
    data: bytes = b""
    code: int = 0


class WsPeer(QueuedPeer[_Outgoing]):
    """One raw-WebSocket connection: a :class:`~fake_server.peer.QueuedPeer` over aiohttp.

    The endpoint must run :meth:`run_writer` in a task for the lifetime of the
    connection and must route received pongs to :meth:`pong_received`.
    """

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport | None,
        *,
        faults: FaultState,
        counters: Counters,
        limits: QueueLimits,
        close_timeout: float,
        remote: str,
        codec: str = "json",
    ) -> None:
        super().__init__(
            faults=faults,
            counters=counters,
            limits=limits,
            close_timeout=close_timeout,
            remote=remote,
        )
        self.ws = ws
        self.codec = codec
        """``"json"`` (text frames) or ``"msgpack"`` (binary), as negotiated."""
        self._transport = transport
        self._pong_waiters: dict[bytes, asyncio.Future[float]] = {}
        self.reader: asyncio.Task[None] | None = None
        """The endpoint's read loop, stopped before the close (see :meth:`_close`)."""

    def __repr__(self) -> str:
        return f"WsPeer({self.remote}, close_requested={self.close_requested})"

    # -- Peer protocol -------------------------------------------------------------------

    def send(self, envelope: dict[str, Any], *, tag: str | None = None) -> None:
        """Queue one envelope; ``ValueError`` when it is not strict JSON (NaN, Infinity)."""
        if not self.open:
            return
        if self.codec == "msgpack":
            data = msgpack.packb(envelope, use_bin_type=True)
            self._put(_Outgoing(_Kind.BINARY, data=data), len(data), tag)
        else:
            text = json.dumps(envelope, separators=(",", ":"), allow_nan=False)
            self._put(_Outgoing(_Kind.TEXT, text=text), len(text), tag)

    # -- heartbeat support ---------------------------------------------------------------

    def send_pong(self, data: bytes) -> None:
        if not self.aborted:
            self._put(_Outgoing(_Kind.PONG, data=data), len(data))

    def send_ping(self, data: bytes) -> asyncio.Future[float]:
        """Queue a ping; the future resolves with the loop time its pong arrived."""
        waiter: asyncio.Future[float] = self._loop.create_future()
        self._pong_waiters[data] = waiter
        self._put(_Outgoing(_Kind.PING, data=data), len(data))
        return waiter

    def pong_received(self, data: bytes) -> None:
        waiter = self._pong_waiters.pop(bytes(data), None)
        if waiter is not None and not waiter.done():
            waiter.set_result(self._loop.time())

    # -- QueuedPeer ----------------------------------------------------------------------

    def _close_item(self, code: int, reason: str) -> _Outgoing:
        return _Outgoing(_Kind.CLOSE, text=reason, code=code)

    def _cut(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    async def _write(self, item: _Outgoing) -> bool:
        if item.kind is _Kind.TEXT:
            await self.ws.send_str(item.text)
        elif item.kind is _Kind.BINARY:
            await self.ws.send_bytes(item.data)
        elif item.kind is _Kind.PING:
            await self.ws.ping(item.data)
        elif item.kind is _Kind.PONG:
            await self.ws.pong(item.data)
        else:
            await self._close(item.code, item.text)
            return True
        return False

    async def _close(self, code: int, reason: str) -> None:
        reader = self.reader
        if reader is not None and not reader.done():
            # Not while the reader waits in receive(): aiohttp would then cut the TCP
            # connection without reading the client's close (a reset can lose what we
            # sent). Nothing read after our close is carried out anyway.
            reader.cancel()
            await asyncio.wait({reader})
        try:
            async with asyncio.timeout(self._close_timeout):
                await self.ws.close(code=code, message=reason.encode()[:123])
        except TimeoutError:
            self.abort()
