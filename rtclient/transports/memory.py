"""An in-memory transport for unit tests of code built on rtclient (no sockets).

``transport = MemoryTransport()`` is passed to ``Client(..., transport=transport)``;
the test plays the server with ``server = await transport.accept()``, then
``await server.recv()`` / ``await server.send(envelope)`` / ``await server.close(code)``;
``server.stall()`` makes the link half-open (a dead link only a heartbeat notices).
Envelopes travel as Python objects: no encoding.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConnectionLost, TransportError

__all__ = ["MemoryConnection", "MemoryTransport"]


@dataclass(slots=True)
class _Closed:
    code: int | None
    reason: str


@dataclass(eq=False)
class MemoryConnection:
    """One end of an in-memory connection. ``token`` is what the client presented."""

    token: str | None = None
    _inbox: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    _peer: MemoryConnection | None = None
    _closed: _Closed | None = None
    _stalled: bool = False
    _gone: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, frame: Any) -> None:
        """Deliver an envelope (any object) to the other end (lost if the link stalled)."""
        if self._closed is not None or self._peer is None:
            raise ConnectionLost(*self._close_info())
        if not self._stalled:
            self._peer._inbox.put_nowait(frame)

    def stall(self) -> None:
        """Make the link half-open: from now on nothing crosses it in either direction
        and pings go unanswered, but neither end sees a close until one aborts or closes.
        """
        self._stalled = True
        if self._peer is not None:
            self._peer._stalled = True

    async def recv(self) -> Any:
        """Wait for an envelope from the other end."""
        if self._closed is not None and self._inbox.empty():
            raise ConnectionLost(*self._close_info())
        item = await self._inbox.get()
        if isinstance(item, _Closed):
            self._closed = item
            raise ConnectionLost(item.code, item.reason)
        return item

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close both ends; the other end's ``recv`` raises ConnectionLost(code)."""
        self._shut(_Closed(code, reason))

    def abort(self) -> None:
        """Close both ends with no close code (as a dropped TCP connection)."""
        self._shut(_Closed(None, ""))

    async def ping(self) -> float:
        """In memory the round trip takes no time; on a stalled link no pong comes."""
        if self._closed is None and self._stalled:
            await self._gone.wait()
        if self._closed is not None:
            raise ConnectionLost(*self._close_info())
        return 0.0

    def _shut(self, info: _Closed) -> None:
        if self._closed is None:
            self._closed = info
            self._inbox.put_nowait(info)
            self._gone.set()
            if self._peer is not None and self._peer._closed is None:
                self._peer._closed = info
                self._peer._inbox.put_nowait(info)
                self._peer._gone.set()

    def _close_info(self) -> tuple[int | None, str]:
        info = self._closed or _Closed(None, "")
        return info.code, info.reason


class MemoryTransport:
    """Connects clients to a test that plays the server."""

    def __init__(self) -> None:
        self._pending: asyncio.Queue[MemoryConnection] = asyncio.Queue()
        self._refusals: list[BaseException] = []
        self.attempts = 0

    def refuse_next(self, error: BaseException | None = None) -> None:
        """Make the next connection attempt fail with ``error`` (a TransportError)."""
        self._refusals.append(error or TransportError("connection refused (memory)"))

    async def connect(
        self, url: str, *, token: str | None, open_timeout: float
    ) -> MemoryConnection:
        """Open a connection; the server end is handed to :meth:`accept`."""
        self.attempts += 1
        if self._refusals:
            raise self._refusals.pop(0)
        client, server = MemoryConnection(token=token), MemoryConnection(token=token)
        client._peer, server._peer = server, client
        self._pending.put_nowait(server)
        return client

    async def accept(self) -> MemoryConnection:
        """Wait for the next client connection; return the server's end."""
        return await self._pending.get()
