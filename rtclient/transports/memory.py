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
from .inbox import Inbox

__all__ = ["MemoryConnection", "MemoryTransport"]


@dataclass(eq=False)
class MemoryConnection:
    """One end of an in-memory connection. ``token`` is what the client presented."""

    token: str | None = None
    _inbox: Inbox = field(default_factory=Inbox)
    _peer: MemoryConnection | None = None
    _stalled: bool = False
    _gone: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, frame: Any) -> None:
        """Deliver an envelope (any object) to the other end (lost if the link stalled)."""
        if self._inbox.closed is not None or self._peer is None:
            raise ConnectionLost(*self._close_info())
        if not self._stalled:
            self._peer._inbox.put(frame)

    def stall(self) -> None:
        """Make the link half-open: from now on nothing crosses it in either direction
        and pings go unanswered, but neither end sees a close until one aborts or closes.
        """
        self._stalled = True
        if self._peer is not None:
            self._peer._stalled = True

    async def recv(self) -> Any:
        """Wait for an envelope from the other end (ConnectionLost once it closed)."""
        return await self._inbox.get()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close both ends; the other end's ``recv`` raises ConnectionLost(code)."""
        self._shut(code, reason)

    def abort(self) -> None:
        """Close both ends with no close code (as a dropped TCP connection)."""
        self._shut(None, "")

    async def ping(self) -> float:
        """In memory the round trip takes no time; on a stalled link no pong comes."""
        if self._inbox.closed is None and self._stalled:
            await self._gone.wait()
        if self._inbox.closed is not None:
            raise ConnectionLost(*self._close_info())
        return 0.0

    def _shut(self, code: int | None, reason: str) -> None:
        self._gone.set()
        if self._inbox.close(code, reason) and self._peer is not None:
            self._peer._inbox.close(code, reason)
            self._peer._gone.set()

    def _close_info(self) -> tuple[int | None, str]:
        return self._inbox.closed or (None, "")


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
