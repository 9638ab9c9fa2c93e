"""FaultProxy: a loopback TCP proxy that injects network faults, for integration tests.

::

    async with FaultProxy(upstream=("127.0.0.1", server_port), seed=1) as proxy:
        async with websockets.connect(proxy.url("ws", "/ws")) as ws:
            with proxy.latency(200, jitter=50, direction="downstream"):
                ...                      # every byte to the client is 150-250 ms late
            proxy.blackhole()            # from here on, a half-open link
            await proxy.down()           # cut everything, refuse connects (same port)
            await proxy.up()

The proxy forwards raw bytes and knows nothing of WebSocket. Toxics (see
:mod:`rtclient.testing.toxics`) apply at once to the live connections and to every new
one until removed. Each shortcut (``latency``, ``blackhole`` …) puts its toxic in force
*when called* and returns a :class:`ToxicHandle`; leaving ``with handle:`` or
``async with handle:`` (both work; nothing needs awaiting) removes it, as do
``proxy.remove(handle)``, ``handle.remove()`` and ``proxy.clear()``.

Why asyncio streams rather than Protocols: the proxy needs a task per direction anyway
(latency and bandwidth are waits), and streams give end-to-end backpressure for free —
``drain()`` blocks a writer behind a slow peer, the bounded queue blocks the reader, and
``StreamReader`` pauses the socket once its buffer is full, which with Protocols would be
hand-written ``pause_reading`` bookkeeping. The cost is a few tasks per connection.

Every task belongs to the proxy: one per connection, each holding its pumps in a
``TaskGroup``; :meth:`FaultProxy.close` ends and awaits them all and closes every socket.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import random
import socket
from types import TracebackType
from typing import Generic, Self, TypeVar

from fake_server.listening import stop_accepting

from ._link import Link, ProxyStats
from .toxics import (
    Bandwidth,
    Blackhole,
    Direction,
    Latency,
    LimitData,
    ResetPeer,
    Slicer,
    SlowClose,
    Toxic,
)

__all__ = ["FaultProxy", "ToxicHandle"]

log = logging.getLogger("rtclient.testing")

T = TypeVar("T", bound=Toxic)
T_co = TypeVar("T_co", bound=Toxic, covariant=True)


class ToxicHandle(Generic[T_co]):
    """A toxic in force on a proxy. Remove it with ``remove()`` or by leaving ``with``."""

    __slots__ = ("_proxy", "_toxic")

    def __init__(self, proxy: FaultProxy, toxic: T_co) -> None:
        self._proxy = proxy
        self._toxic = toxic

    @property
    def toxic(self) -> T_co:
        """What this handle put in force."""
        return self._toxic

    @property
    def active(self) -> bool:
        """Whether the toxic is still in force."""
        return self in self._proxy.toxics

    def remove(self) -> None:
        """Take the toxic off every connection; idempotent."""
        self._proxy.remove(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()

    def __repr__(self) -> str:
        state = "active" if self.active else "removed"
        return f"<ToxicHandle {self.toxic!r} {state}>"


class FaultProxy:
    """A TCP proxy on ``host`` (port 0: any free port) in front of ``upstream``.

    Use it as ``async with FaultProxy(...) as proxy`` or call :meth:`start` and
    :meth:`close` yourself; the caller must close it (closing cuts every connection).
    ``seed`` seeds the random draws: toxicity (which connections a toxic affects) and,
    separately, jitter and slice sizes.
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int | None = None,
    ) -> None:
        self.upstream = upstream
        self._host = host
        self._port = port
        self._toxicity_rng = random.Random(seed)
        # Own stream, so that timing-dependent jitter draws never shift toxicity draws.
        self._noise_rng = random.Random(seed)
        self._server: asyncio.Server | None = None
        self._reservation: socket.socket | None = None
        self._links: dict[Link, asyncio.Task[None]] = {}
        self._toxics: dict[ToxicHandle[Toxic], None] = {}  # an ordered set
        self._stats = ProxyStats()
        self._next_id = 0
        self._closed = False
        self._changed = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> Self:
        """Start listening. Afterwards :attr:`port` is the port actually bound."""
        await self.up()
        return self

    async def close(self) -> None:
        """Remove all toxics, stop listening, cut every connection and await its tasks."""
        self._closed = True
        self.clear()
        await self.down()
        if self._reservation is not None:
            self._reservation.close()  # the port is free from here on
            self._reservation = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def up(self) -> None:
        """Listen (again, on the same port after :meth:`down`); no-op if already up."""
        if self._closed:
            raise RuntimeError("FaultProxy is closed")
        if self._server is not None:
            return
        reserved = self._reservation is not None
        if not reserved and _REUSE_PORT is not None:
            try:
                self._reservation = _reserve(self._host, self._port)
            except OSError as exc:
                # A fixed port whose earlier connections linger in TIME_WAIT refuses a
                # bind without SO_REUSEADDR (which the reservation must not have: it
                # would let any such socket share the port). Listen without holding it.
                if exc.errno != errno.EADDRINUSE or not self._port:
                    raise
                log.debug("FaultProxy: port %d not held between down() and up()", self._port)
            else:
                self._port = self._reservation.getsockname()[1]
        try:
            self._server = await asyncio.start_server(
                self._accept, self._host, self._port, reuse_port=self._reservation is not None
            )
        except BaseException:
            if not reserved and self._reservation is not None:
                self._reservation.close()
                self._reservation = None
            raise
        self._port = self._server.sockets[0].getsockname()[1]

    async def down(self, *, reset: bool = False) -> None:
        """Stop listening (connects are refused) and cut every connection.

        Connections get a plain close, or an RST to both peers with ``reset=True``.
        Returns once every connection's sockets are closed and its tasks are done.
        The port stays the proxy's until :meth:`close`: a socket bound to it with
        ``SO_REUSEPORT`` (and never listening) holds it, so no other socket on the
        machine can bind it before :meth:`up`. Not so without ``SO_REUSEPORT``, nor for
        a fixed ``port`` that could only be bound with ``SO_REUSEADDR`` (connections
        of an earlier listener in TIME_WAIT): the port is free while down, and ``up()``
        may then fail with EADDRINUSE.
        """
        server, self._server = self._server, None
        if server is not None:
            # Not close() at once: a connection being accepted would be dropped unclosed
            # (fake_server.listening); this way _accept sees it, and cuts it.
            await stop_accepting(server)
            server.close()
        for link in self._links:
            link.stop(rst=("client", "server") if reset else ())
        if self._links:
            await asyncio.wait(list(self._links.values()))
        if server is not None:
            await server.wait_closed()

    @property
    def is_up(self) -> bool:
        """Whether the proxy is accepting connections."""
        return self._server is not None

    # -- address ---------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The address the proxy listens on."""
        return self._host

    @property
    def port(self) -> int:
        """The port the proxy listens on (known once started)."""
        if not self._port:
            raise RuntimeError("FaultProxy has not been started")
        return self._port

    def url(self, scheme: str = "http", path: str = "") -> str:
        """``scheme://host:port/path`` pointing at the proxy, e.g. ``url("ws", "/ws")``."""
        if path and not path.startswith("/"):
            path = "/" + path
        return f"{scheme}://{self.host}:{self.port}{path}"

    # -- observation -----------------------------------------------------------------------

    @property
    def connections(self) -> int:
        """Live proxied connections (accepted and not yet fully closed)."""
        return len(self._links)

    @property
    def stats(self) -> ProxyStats:
        """A snapshot of the counters (later traffic does not change it)."""
        return dataclasses.replace(self._stats)

    @property
    def toxics(self) -> tuple[ToxicHandle[Toxic], ...]:
        """The toxics in force, oldest first."""
        return tuple(self._toxics)

    async def wait_connections(self, count: int) -> None:
        """Wait until exactly ``count`` connections are live (wrap in ``asyncio.timeout``)."""
        while len(self._links) != count:
            changed = self._changed
            await changed.wait()

    # -- toxics ----------------------------------------------------------------------------

    def add(self, toxic: T) -> ToxicHandle[T]:
        """Put ``toxic`` in force on the live connections (by toxicity) and every new one."""
        if self._closed:
            raise RuntimeError("FaultProxy is closed")
        handle = ToxicHandle(self, toxic)
        self._toxics[handle] = None
        for link in self._links:  # accept order, so seeded draws are reproducible
            self._meet(handle, link)
        return handle

    def remove(self, handle: ToxicHandle[Toxic]) -> None:
        """Take the toxic off every connection; removing twice is a no-op."""
        if handle._proxy is not self:
            raise ValueError("this toxic belongs to another FaultProxy")
        if handle in self._toxics:
            del self._toxics[handle]
            for link in self._links:
                link.detach(handle)

    def clear(self) -> None:
        """Remove every toxic."""
        for handle in list(self._toxics):
            self.remove(handle)

    def latency(
        self,
        latency: float,
        jitter: float = 0.0,
        *,
        direction: Direction = "both",
        toxicity: float = 1.0,
    ) -> ToxicHandle[Latency]:
        """Delay data by ``latency`` ± ``jitter`` ms; byte order is kept."""
        return self.add(Latency(latency, jitter, direction=direction, toxicity=toxicity))

    def bandwidth(
        self, rate: float, *, direction: Direction = "both", toxicity: float = 1.0
    ) -> ToxicHandle[Bandwidth]:
        """Limit throughput to ``rate`` KB/s (1 KB = 1000 bytes) per connection and direction."""
        return self.add(Bandwidth(rate, direction=direction, toxicity=toxicity))

    def blackhole(
        self, *, direction: Direction = "both", toxicity: float = 1.0
    ) -> ToxicHandle[Blackhole]:
        """Drop every byte (and hold back closes) while the sockets stay open."""
        return self.add(Blackhole(direction=direction, toxicity=toxicity))

    def reset_peer(
        self, *, direction: Direction = "both", after: float = 0.0, toxicity: float = 1.0
    ) -> ToxicHandle[ResetPeer]:
        """Close connections with RST ``after`` ms: live ones from now, new ones on arrival.

        ``direction`` says who gets the RST: ``"downstream"`` the client, ``"upstream"``
        the server, ``"both"`` both; the other peer gets a plain close.
        """
        return self.add(ResetPeer(after=after, direction=direction, toxicity=toxicity))

    def slow_close(
        self, delay: float, *, direction: Direction = "both", toxicity: float = 1.0
    ) -> ToxicHandle[SlowClose]:
        """When one peer closes, pass the close on to the other ``delay`` ms late."""
        return self.add(SlowClose(delay, direction=direction, toxicity=toxicity))

    def limit_data(
        self, n_bytes: int, *, direction: Direction = "both", toxicity: float = 1.0
    ) -> ToxicHandle[LimitData]:
        """Let ``n_bytes`` more pass in a direction, then close the connection (mid-frame)."""
        return self.add(LimitData(n_bytes, direction=direction, toxicity=toxicity))

    def slicer(
        self,
        average_size: int,
        size_variation: int = 0,
        delay: float = 0.0,
        *,
        direction: Direction = "both",
        toxicity: float = 1.0,
    ) -> ToxicHandle[Slicer]:
        """Write in pieces of ``average_size`` ± ``size_variation`` bytes, ``delay`` ms apart."""
        return self.add(
            Slicer(average_size, size_variation, delay, direction=direction, toxicity=toxicity)
        )

    # -- internals -------------------------------------------------------------------------

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain function, not a coroutine: asyncio would own a coroutine's task.
        if self._server is None:  # accepted in the same tick as down()
            writer.transport.abort()
            return
        self._next_id += 1
        self._stats.connections_total += 1
        link = Link(
            self._next_id,
            (reader, writer),
            upstream=self.upstream,
            stats=self._stats,
            rng=self._noise_rng,
        )
        for handle in self._toxics:
            self._meet(handle, link)
        task = asyncio.get_running_loop().create_task(link.run(), name=f"FaultProxy link {link.id}")
        self._links[link] = task
        task.add_done_callback(lambda t: self._link_done(link, t))
        self._signal_change()

    def _meet(self, handle: ToxicHandle[Toxic], link: Link) -> None:
        toxicity = handle.toxic.toxicity
        if toxicity >= 1.0 or (toxicity > 0.0 and self._toxicity_rng.random() < toxicity):
            link.attach(handle, handle.toxic)
            self._stats.toxics_applied += 1

    def _link_done(self, link: Link, task: asyncio.Task[None]) -> None:
        self._links.pop(link, None)
        self._signal_change()
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("FaultProxy link %d failed", link.id, exc_info=exc)

    def _signal_change(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


_REUSE_PORT: int | None = getattr(socket, "SO_REUSEPORT", None)


def _reserve(host: str, port: int) -> socket.socket:
    """A socket bound to ``(host, port)`` that never listens: it keeps the port taken.

    Connects to a port with no listening socket are refused, as with nothing bound;
    but binding it fails for every other socket (``EADDRINUSE``), ephemeral ports
    never land on it, and the proxy's listening socket joins it with ``SO_REUSEPORT``
    (same user only), each time :meth:`FaultProxy.up` listens again.
    """
    assert _REUSE_PORT is not None
    family, type_, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, _REUSE_PORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock
