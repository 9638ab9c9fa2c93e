"""fake_server's hub behind a :class:`MemoryTransport`: the real rooms contract, no sockets.

The hub is the server's transport-agnostic core (rooms, event log, dedupe, acks, token
lifetimes, faults); this is a third thin endpoint beside the raw WebSocket and Socket.IO
ones, for Client tests in virtual time. Like ``fake_server.ws_endpoint`` it
authenticates the token the client presented, attaches a peer (welcome included), feeds
every envelope to the hub and detaches the connection once it is gone. What it leaves
out is what only a socket has: frames, compression, HTTP handshakes, server pings.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from fake_server.auth import AuthFailure, TokenAuthority
from fake_server.config import ServerConfig
from fake_server.envelope import FrameError, event, parse_envelope
from fake_server.faults import FaultState
from fake_server.hub import Connection, Hub
from fake_server.stats import Counters
from fake_server.timers import Timers
from rtclient.errors import ConnectionLost
from rtclient.transports.memory import MemoryConnection, MemoryTransport

__all__ = ["MemoryHub"]


class _Peer:
    """The hub's view of one memory connection: queued sends, written in order."""

    close_requested: tuple[int, str] | None = None

    def __init__(self, end: MemoryConnection) -> None:
        self.end = end
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.close_code: int | None = None

    def send(self, envelope: dict[str, Any], *, tag: str | None = None) -> None:
        self._queue.put_nowait(("send", envelope))

    def in_flight(self, tag: str) -> int:
        return 0  # no limit on syncs in flight here: the tests are not about it

    def close(self, code: int, reason: str) -> None:
        self._queue.put_nowait(("close", (code, reason)))

    def abort(self) -> None:
        self.end.abort()

    async def run_writer(self) -> None:
        while True:
            kind, item = await self._queue.get()
            try:
                if kind == "send":
                    await self.end.send(item)
                else:
                    self.close_code = item[0]
                    await self.end.close(*item)
                    return
            except ConnectionLost:
                return


class MemoryHub:
    """Serves every connection a :class:`MemoryTransport` opens with fake_server's hub.

    ``wall_clock`` is the server's clock for token ``exp`` (pass the one the Client
    uses); the hub's timers run on the loop, so in virtual time they jump with it.
    """

    def __init__(
        self,
        transport: MemoryTransport,
        *,
        wall_clock: Callable[[], float],
        **config: Any,
    ) -> None:
        self.transport = transport
        self.config = ServerConfig(**config).with_secret()
        assert self.config.secret is not None
        self.authority = TokenAuthority(self.config.secret, leeway=self.config.token_leeway)
        self.faults = FaultState()
        self.counters = Counters()
        self.timers = Timers()
        self._wall_clock = wall_clock
        self.hub = Hub(
            self.config,
            authority=self.authority,
            faults=self.faults,
            counters=self.counters,
            scheduler=self.timers,
            clock=wall_clock,
            monotonic=lambda: asyncio.get_running_loop().time(),
        )
        self.links: list[MemoryConnection] = []
        """The server ends of every connection accepted, in order."""
        self.welcomed = 0
        """Connections authenticated and attached (sent ``connected``)."""
        self._welcome = asyncio.Condition()

    async def wait_welcomed(self, count: int, timeout: float) -> None:
        """Wait until ``count`` connections were welcomed in all (``timeout`` in seconds).

        A condition, not a poll: in virtual time a poll would step the clock in tiny
        increments through every minute the test waits.
        """
        async with asyncio.timeout(timeout), self._welcome:
            await self._welcome.wait_for(lambda: self.welcomed >= count)

    def issue_token(self, user_id: str, ttl: float = 3600.0) -> str:
        return self.authority.issue(user_id, now=self._wall_clock(), ttl=ttl)

    @property
    def link(self) -> MemoryConnection:
        """The server end of the latest connection."""
        return self.links[-1]

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[MemoryHub]:
        async with asyncio.TaskGroup() as tg:
            acceptor = tg.create_task(self._accept(tg))
            try:
                yield self
            finally:
                acceptor.cancel()
                for link in self.links:
                    link.abort()
                self.timers.cancel_all()

    async def _accept(self, tg: asyncio.TaskGroup) -> None:
        while True:
            end = await self.transport.accept()
            self.links.append(end)
            tg.create_task(self._serve(end))

    async def _serve(self, end: MemoryConnection) -> None:
        peer = _Peer(end)
        writer = asyncio.create_task(peer.run_writer())
        conn: Connection | None = None
        code: int | None = None
        try:
            try:
                principal = self.hub.authenticate(end.token)
            except AuthFailure as exc:
                peer.close(exc.close_code, exc.code.value)
                return
            conn = self.hub.attach(peer, principal)
            self.welcomed += 1
            async with self._welcome:
                self._welcome.notify_all()
            while True:
                frame = await end.recv()
                try:
                    request = parse_envelope(frame)
                except FrameError as exc:
                    peer.send(event("error", exc.payload()))
                    continue
                self.hub.handle_request(conn, request)
        except ConnectionLost as exc:
            code = exc.code
        finally:
            if conn is not None:
                self.hub.detach(conn, code=code or peer.close_code, reason="memory link closed")
            await asyncio.wait({writer}, timeout=1.0)
            writer.cancel()
