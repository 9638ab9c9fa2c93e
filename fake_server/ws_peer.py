"""A :class:`~fake_server.hub.Peer` over an aiohttp ``WebSocketResponse``.

Every outgoing frame (envelopes, pings, pongs, the close frame) goes through one queue
drained by :meth:`WsPeer.run_writer`, so injected latency and pauses keep the
per-connection order.  aiohttp errors stay inside this module.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
from dataclasses import dataclass
from typing import Any

import msgpack
from aiohttp import web

from .faults import FaultState

__all__ = ["WsPeer"]

log = logging.getLogger("fake_server.ws")


class _Kind(enum.Enum):
    TEXT = enum.auto()
    BINARY = enum.auto()
    PING = enum.auto()
    PONG = enum.auto()
    CLOSE = enum.auto()


@dataclass(frozen=True, slots=True)
class _Outgoing:
    kind: _Kind
    due: float
    """Loop time before which the frame must not be written (injected latency)."""
    text: str = ""
    data: bytes = b""
    code: int = 0


class WsPeer:
    """One raw-WebSocket connection: an ordered, pausable, delayable sender.

    The endpoint must run :meth:`run_writer` in a task for the lifetime of the
    connection and must route received pongs to :meth:`pong_received`.
    """

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport | None,
        *,
        faults: FaultState,
        close_timeout: float,
        remote: str,
        codec: str = "json",
    ) -> None:
        self.ws = ws
        self.codec = codec
        """``"json"`` (text frames) or ``"msgpack"`` (binary), as negotiated."""
        self.remote = remote
        self._transport = transport
        self._faults = faults
        self._close_timeout = close_timeout
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[_Outgoing] = asyncio.Queue()
        self._pong_waiters: dict[bytes, asyncio.Future[float]] = {}
        self.close_requested: tuple[int, str] | None = None
        """The close this side asked for, if any (code, reason)."""
        self.aborted = False
        self.finished = asyncio.Event()
        """Set by the endpoint once the connection's handler is done."""

    def __repr__(self) -> str:
        return f"WsPeer({self.remote}, close_requested={self.close_requested})"

    # -- Peer protocol -------------------------------------------------------------------

    def send(self, envelope: dict[str, Any]) -> None:
        if self.close_requested is None and not self.aborted:
            if self.codec == "msgpack":
                self._put(_Kind.BINARY, data=msgpack.packb(envelope, use_bin_type=True))
            else:
                self._put(_Kind.TEXT, text=json.dumps(envelope, separators=(",", ":")))

    def close(self, code: int, reason: str) -> None:
        if self.close_requested is None and not self.aborted:
            self.close_requested = (code, reason)
            self._put(_Kind.CLOSE, code=code, text=reason)

    def abort(self) -> None:
        self.aborted = True
        if self._transport is not None:
            self._transport.abort()

    # -- heartbeat support ---------------------------------------------------------------

    def send_pong(self, data: bytes) -> None:
        if not self.aborted:
            self._put(_Kind.PONG, data=data)

    def send_ping(self, data: bytes) -> asyncio.Future[float]:
        """Queue a ping; the future resolves with the loop time its pong arrived."""
        waiter: asyncio.Future[float] = self._loop.create_future()
        self._pong_waiters[data] = waiter
        self._put(_Kind.PING, data=data)
        return waiter

    def pong_received(self, data: bytes) -> None:
        waiter = self._pong_waiters.pop(bytes(data), None)
        if waiter is not None and not waiter.done():
            waiter.set_result(self._loop.time())

    # -- writer --------------------------------------------------------------------------

    def _put(self, kind: _Kind, *, text: str = "", data: bytes = b"", code: int = 0) -> None:
        due = self._loop.time() + self._faults.latency
        self._queue.put_nowait(_Outgoing(kind, due, text, data, code))

    async def run_writer(self) -> None:
        """Write queued frames in order until the close frame went out or the link broke."""
        while True:
            item = await self._queue.get()
            delay = item.due - self._loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._faults.wait_running()
            if self.aborted:
                return
            try:
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
                    return
            except (ConnectionError, RuntimeError) as exc:
                # The peer went away while we were writing; the reader sees it too.
                log.debug("write to %s failed: %s", self.remote, exc)
                self.abort()
                return

    async def _close(self, code: int, reason: str) -> None:
        try:
            async with asyncio.timeout(self._close_timeout):
                await self.ws.close(code=code, message=reason.encode()[:123])
        except TimeoutError:
            self.abort()
