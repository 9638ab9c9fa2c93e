"""FaultProxy on the wire: each toxic against a tiny asyncio TCP server on loopback.

Timing checks are lower bounds only (a busy machine is slow, never fast). Waits are on
the expected data or state, each bounded by a timeout; the only fixed waits are the short
"nothing arrives" windows of the blackhole checks, which can only be written that way.
"""

from __future__ import annotations

import asyncio
import errno
import random
import socket
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Literal

import pytest

from fake_server.listening import stop_accepting
from rtclient.testing import (
    Bandwidth,
    FaultProxy,
    Latency,
    LimitData,
    ResetPeer,
    Slicer,
    SlowClose,
)
from rtclient.testing.toxics import TokenBucket, latency_delay, slice_sizes

from ..leaks import ACCEPT_STEPS, connect_mid_accept, http_get, no_resource_warnings

WAIT = 2.0  # upper bound on any wait for something that must happen
QUIET = 0.15  # how long "nothing arrives" is watched for


def _now() -> float:
    return asyncio.get_running_loop().time()


class Peer:
    """The server's end of one connection: everything it read, when, and how it ended."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.received = bytearray()
        self.arrivals: list[float] = []
        self.eof_at: float | None = None
        self.error: OSError | None = None
        self._changed = asyncio.Event()

    def note(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT):
            while True:
                changed = self._changed
                if condition():
                    return
                await changed.wait()

    @property
    def ended(self) -> bool:
        return self.eof_at is not None or self.error is not None

    def reset(self) -> None:
        """Close this end with RST."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


class TcpServer:
    """A loopback server on port 0 that records what it reads and, if ``echo``, echoes it."""

    def __init__(self, *, echo: bool) -> None:
        self.echo = echo
        self.peers: asyncio.Queue[Peer] = asyncio.Queue()
        self._all: list[Peer] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def __aenter__(self) -> TcpServer:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        await stop_accepting(self._server)
        self._server.close()
        for peer in self._all:
            peer.writer.transport.abort()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for peer in self._all:
            with suppress(OSError):
                await peer.writer.wait_closed()
        await self._server.wait_closed()

    async def next_peer(self) -> Peer:
        async with asyncio.timeout(WAIT):
            return await self.peers.get()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = Peer(reader, writer)
        self._all.append(peer)
        task = asyncio.get_running_loop().create_task(self._serve(peer), name="test-server")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.peers.put_nowait(peer)

    async def _serve(self, peer: Peer) -> None:
        try:
            while data := await peer.reader.read(65536):
                peer.received += data
                peer.arrivals.append(_now())
                peer.note()
                if self.echo:
                    peer.writer.write(data)
                    await peer.writer.drain()
        except OSError as exc:
            peer.error = exc
            peer.note()
            return
        peer.eof_at = _now()
        peer.note()
        if self.echo:
            peer.writer.close()


class Client:
    """The client's end of a connection through the proxy."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def read_exactly(self, n: int) -> bytes:
        async with asyncio.timeout(WAIT):
            return await self.reader.readexactly(n)

    async def read_until_closed(self) -> tuple[bytes, Literal["eof", "reset"]]:
        data = bytearray()
        async with asyncio.timeout(WAIT):
            try:
                while chunk := await self.reader.read(65536):
                    data += chunk
            except ConnectionResetError:
                return bytes(data), "reset"
        return bytes(data), "eof"

    async def was_reset_before(self, n: int) -> bool:
        """Read ``n`` bytes; True if the connection was reset first."""
        try:
            await self.read_exactly(n)
        except ConnectionResetError:
            return True
        return False

    async def assert_quiet(self) -> None:
        """Nothing arrives (no byte, no EOF, no reset) for QUIET seconds."""
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(QUIET):
                await self.reader.read(1)


@asynccontextmanager
async def connect(proxy: FaultProxy) -> AsyncIterator[Client]:
    reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
    try:
        yield Client(reader, writer)
    finally:
        writer.transport.abort()
        with suppress(OSError):
            await writer.wait_closed()


@pytest.fixture
async def echo() -> AsyncIterator[TcpServer]:
    async with TcpServer(echo=True) as server:
        yield server


@pytest.fixture
async def sink() -> AsyncIterator[TcpServer]:
    async with TcpServer(echo=False) as server:
        yield server


@pytest.fixture
async def proxy(echo: TcpServer) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(upstream=echo.address, seed=7) as fault_proxy:
        yield fault_proxy


@pytest.fixture
async def sink_proxy(sink: TcpServer) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(upstream=sink.address, seed=7) as fault_proxy:
        yield fault_proxy


# -- plain forwarding ----------------------------------------------------------------------


async def test_address_and_url(proxy: FaultProxy) -> None:
    assert proxy.host == "127.0.0.1" and proxy.port > 0
    assert proxy.url("ws", "/ws") == f"ws://127.0.0.1:{proxy.port}/ws"
    assert proxy.url("http", "health") == f"http://127.0.0.1:{proxy.port}/health"
    assert proxy.url() == f"http://127.0.0.1:{proxy.port}"


async def test_forwards_both_ways_and_counts(proxy: FaultProxy, echo: TcpServer) -> None:
    async with connect(proxy) as client:
        client.writer.write(b"hello")
        assert await client.read_exactly(5) == b"hello"
        assert proxy.connections == 1
        stats = proxy.stats
        assert (stats.connections_total, stats.bytes_upstream, stats.bytes_downstream) == (1, 5, 5)
        assert (stats.peer_resets, stats.resets_sent, stats.bytes_dropped) == (0, 0, 0)
    async with asyncio.timeout(WAIT):
        await proxy.wait_connections(0)


async def test_half_close_is_passed_on(proxy: FaultProxy, echo: TcpServer) -> None:
    async with connect(proxy) as client:
        client.writer.write(b"last words")
        client.writer.write_eof()
        assert await client.read_until_closed() == (b"last words", "eof")
        peer = await echo.next_peer()
        assert peer.eof_at is not None and peer.error is None


async def test_unreachable_upstream_closes_the_client() -> None:
    async with TcpServer(echo=True) as gone:
        address = gone.address
    async with FaultProxy(upstream=address) as proxy, connect(proxy) as client:
        assert await client.read_until_closed() == (b"", "eof")
        assert proxy.stats.upstream_failures == 1


# -- latency -------------------------------------------------------------------------------


async def test_latency_delays_delivery_by_at_least_latency(
    proxy: FaultProxy, echo: TcpServer
) -> None:
    async with connect(proxy) as client:
        peer = await echo.next_peer()
        proxy.latency(100, direction="upstream")
        sent = _now()
        client.writer.write(b"ping")
        await peer.wait_for(lambda: len(peer.received) >= 4)
        assert peer.arrivals[0] - sent >= 0.1


async def test_latency_applies_to_new_connections(proxy: FaultProxy) -> None:
    with proxy.latency(80, direction="downstream"):
        async with connect(proxy) as client:
            sent = _now()
            client.writer.write(b"x")
            assert await client.read_exactly(1) == b"x"
            assert _now() - sent >= 0.08


async def test_jitter_never_reorders(proxy: FaultProxy, echo: TcpServer) -> None:
    async with connect(proxy) as client:
        peer = await echo.next_peer()
        proxy.latency(20, jitter=20, direction="upstream")
        expected = b"".join(f"{i:04d}".encode() for i in range(40))
        for i in range(0, len(expected), 4):
            client.writer.write(expected[i : i + 4])
            await client.writer.drain()
            await asyncio.sleep(0)  # let the proxy read it as a chunk of its own
        await peer.wait_for(lambda: len(peer.received) >= len(expected))
        assert bytes(peer.received) == expected
        assert len(peer.arrivals) > 1  # the jitter really was applied chunk by chunk


# -- bandwidth -----------------------------------------------------------------------------


async def test_bandwidth_takes_at_least_size_over_rate(
    sink_proxy: FaultProxy, sink: TcpServer
) -> None:
    async with connect(sink_proxy) as client:
        peer = await sink.next_peer()
        sink_proxy.bandwidth(50, direction="upstream")  # 50 KB/s = 50_000 bytes/s
        payload = bytes(10_000)
        sent = _now()
        client.writer.write(payload)
        await peer.wait_for(lambda: len(peer.received) >= len(payload))
        assert peer.arrivals[-1] - sent >= len(payload) / 50_000
        assert len(peer.arrivals) > 1


# -- blackhole -----------------------------------------------------------------------------


async def test_blackhole_drops_bytes_and_keeps_the_socket_open(
    proxy: FaultProxy, echo: TcpServer
) -> None:
    async with connect(proxy) as client:
        peer = await echo.next_peer()
        client.writer.write(b"a")
        assert await client.read_exactly(1) == b"a"
        with proxy.blackhole(direction="upstream") as hole:
            assert hole.active and proxy.toxics == (hole,)
            client.writer.write(b"lost")
            await client.assert_quiet()  # no echo, no EOF: a half-open link
            assert bytes(peer.received) == b"a" and not peer.ended
            assert proxy.connections == 1
        assert not hole.active and proxy.toxics == ()
        client.writer.write(b"back")
        assert await client.read_exactly(4) == b"back"  # "lost" was dropped, not delayed
        assert bytes(peer.received) == b"aback"
        assert proxy.stats.bytes_dropped == 4


async def test_blackhole_holds_back_a_close_until_removed(
    sink_proxy: FaultProxy, sink: TcpServer
) -> None:
    async with connect(sink_proxy) as client:
        peer = await sink.next_peer()
        hole = sink_proxy.blackhole(direction="downstream")
        peer.writer.write(b"x")
        peer.writer.write_eof()
        await client.assert_quiet()
        hole.remove()
        assert await client.read_until_closed() == (b"", "eof")


async def test_an_upstream_toxic_leaves_downstream_alone(
    sink_proxy: FaultProxy, sink: TcpServer
) -> None:
    async with connect(sink_proxy) as client:
        peer = await sink.next_peer()
        sink_proxy.blackhole(direction="upstream")
        peer.writer.write(b"down")
        assert await client.read_exactly(4) == b"down"
        client.writer.write(b"up")
        await client.assert_quiet()
        assert bytes(peer.received) == b""


# -- reset_peer ----------------------------------------------------------------------------


async def test_reset_peer_resets_live_and_new_connections(
    proxy: FaultProxy, echo: TcpServer
) -> None:
    async with connect(proxy) as client:
        client.writer.write(b"a")
        assert await client.read_exactly(1) == b"a"
        handle = proxy.reset_peer()
        assert await client.read_until_closed() == (b"", "reset")
    async with connect(proxy) as client:
        client.writer.write(b"b")
        assert await client.read_until_closed() == (b"", "reset")
    assert proxy.stats.resets_sent == 4  # client and server side of both connections
    handle.remove()
    async with connect(proxy) as client:
        client.writer.write(b"c")
        assert await client.read_exactly(1) == b"c"


async def test_reset_peer_after_a_delay(proxy: FaultProxy) -> None:
    async with connect(proxy) as client:
        client.writer.write(b"a")
        assert await client.read_exactly(1) == b"a"
        added = _now()
        proxy.reset_peer(after=100, direction="downstream")
        assert await client.read_until_closed() == (b"", "reset")
        assert _now() - added >= 0.1


async def test_reset_peer_upstream_resets_only_the_server(
    sink_proxy: FaultProxy, sink: TcpServer
) -> None:
    async with connect(sink_proxy) as client:
        peer = await sink.next_peer()
        sink_proxy.reset_peer(direction="upstream")
        assert await client.read_until_closed() == (b"", "eof")
        await peer.wait_for(lambda: peer.ended)
        assert isinstance(peer.error, ConnectionResetError)


async def test_a_peer_reset_is_counted_and_passed_on(
    sink_proxy: FaultProxy, sink: TcpServer
) -> None:
    async with connect(sink_proxy) as client:
        peer = await sink.next_peer()
        peer.reset()
        assert await client.read_until_closed() == (b"", "reset")
    stats = sink_proxy.stats
    assert (stats.peer_resets, stats.resets_sent) == (1, 1)
    async with connect(sink_proxy) as client:  # the proxy carries on
        peer = await sink.next_peer()
        peer.writer.write(b"ok")
        assert await client.read_exactly(2) == b"ok"


# -- limit_data ----------------------------------------------------------------------------


async def test_limit_data_upstream_passes_exactly_n_bytes_then_closes(
    sink_proxy: FaultProxy, sink: TcpServer
) -> None:
    async with connect(sink_proxy) as client:
        peer = await sink.next_peer()
        client.writer.write(b"early")  # bytes before the toxic do not count
        await peer.wait_for(lambda: len(peer.received) == 5)
        sink_proxy.limit_data(10, direction="upstream")
        client.writer.write(b"0123456789abcdefghij")
        await peer.wait_for(lambda: peer.ended)
        assert bytes(peer.received) == b"early0123456789" and peer.eof_at is not None
        assert await client.read_until_closed() == (b"", "eof")
        assert sink_proxy.stats.bytes_dropped == 10


async def test_limit_data_downstream_cuts_mid_stream(
    sink_proxy: FaultProxy, sink: TcpServer
) -> None:
    sink_proxy.limit_data(30, direction="downstream")
    async with connect(sink_proxy) as client:
        peer = await sink.next_peer()
        payload = bytes(range(100))
        peer.writer.write(payload)
        assert await client.read_until_closed() == (payload[:30], "eof")


# -- slicer --------------------------------------------------------------------------------


async def test_slicer_makes_the_receiver_see_many_small_reads(
    sink_proxy: FaultProxy, sink: TcpServer
) -> None:
    async with connect(sink_proxy) as client:
        peer = await sink.next_peer()
        sink_proxy.slicer(10, delay=2, direction="downstream")
        payload = bytes(range(200))
        peer.writer.write(payload)
        reads: list[bytes] = []
        async with asyncio.timeout(WAIT):
            while sum(map(len, reads)) < len(payload):
                reads.append(await client.reader.read(65536))
        assert b"".join(reads) == payload
        assert len(reads) >= 5


# -- slow_close ----------------------------------------------------------------------------


async def test_slow_close_delays_the_close(sink_proxy: FaultProxy, sink: TcpServer) -> None:
    async with connect(sink_proxy) as client:
        peer = await sink.next_peer()
        sink_proxy.slow_close(150, direction="downstream")
        peer.writer.write(b"bye")
        closed = _now()
        peer.writer.close()
        assert await client.read_until_closed() == (b"bye", "eof")
        assert _now() - closed >= 0.15


# -- down / up -----------------------------------------------------------------------------


async def test_down_cuts_and_refuses_then_up_accepts_on_the_same_port(
    proxy: FaultProxy,
) -> None:
    port = proxy.port
    async with connect(proxy) as client:
        client.writer.write(b"a")
        assert await client.read_exactly(1) == b"a"
        await proxy.down()
        assert not proxy.is_up and proxy.connections == 0
        assert await client.read_until_closed() == (b"", "eof")
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(proxy.host, port)
    await proxy.up()
    assert proxy.is_up and proxy.port == port
    async with connect(proxy) as client:
        client.writer.write(b"b")
        assert await client.read_exactly(1) == b"b"


@pytest.mark.parametrize("steps", ACCEPT_STEPS)
async def test_a_connection_accepted_as_down_starts_is_cut_not_leaked(
    proxy: FaultProxy, steps: int
) -> None:
    # asyncio builds an accepted connection's transport an iteration later: a close() in
    # between dropped it unclosed (fake_server.listening), and its client waited.
    with no_resource_warnings():
        sock = await connect_mid_accept(proxy.host, proxy.port, steps)
        await proxy.down()
        assert proxy.connections == 0
        await http_get(sock)  # the echo server answers nothing: EOF or reset, not a hang


async def test_the_port_stays_taken_while_down_and_is_freed_by_close(proxy: FaultProxy) -> None:
    # Between down() and up() another socket must not get the port (it did: EADDRINUSE
    # in a test under load). asyncio's servers bind with SO_REUSEADDR, so try that too.
    port = proxy.port
    for _ in range(2):
        await proxy.down()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(proxy.host, port)
        for reuse in (False, True):
            with socket.socket() as other:
                other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, int(reuse))
                with pytest.raises(OSError) as taken:
                    other.bind((proxy.host, port))
                assert taken.value.errno == errno.EADDRINUSE
        with pytest.raises(OSError):
            await asyncio.start_server(lambda r, w: None, proxy.host, port)
        await proxy.up()
        assert proxy.port == port
        async with connect(proxy) as client:
            client.writer.write(b"c")
            assert await client.read_exactly(1) == b"c"
    await proxy.close()
    with socket.socket() as other:
        other.bind((proxy.host, port))  # close() gave the port back


async def test_down_with_reset_sends_rst(proxy: FaultProxy) -> None:
    async with connect(proxy) as client:
        client.writer.write(b"a")
        assert await client.read_exactly(1) == b"a"
        await proxy.down(reset=True)
        assert await client.read_until_closed() == (b"", "reset")


# -- toxicity ------------------------------------------------------------------------------


async def _reset_outcomes(upstream: tuple[str, int], seed: int, toxicity: float) -> list[bool]:
    """For 16 connections in a row, whether a reset_peer of that toxicity hit each."""
    hits: list[bool] = []
    async with FaultProxy(upstream=upstream, seed=seed) as proxy:
        proxy.reset_peer(direction="downstream", toxicity=toxicity)
        for _ in range(16):
            async with connect(proxy) as client:
                client.writer.write(b"x")
                hits.append(await client.was_reset_before(1))
        assert proxy.stats.toxics_applied == sum(hits)
    return hits


async def test_toxicity_zero_never_one_always(echo: TcpServer) -> None:
    assert await _reset_outcomes(echo.address, seed=1, toxicity=0.0) == [False] * 16
    assert await _reset_outcomes(echo.address, seed=1, toxicity=1.0) == [True] * 16


async def test_seeded_toxicity_is_reproducible(echo: TcpServer) -> None:
    first = await _reset_outcomes(echo.address, seed=1234, toxicity=0.5)
    again = await _reset_outcomes(echo.address, seed=1234, toxicity=0.5)
    assert first == again
    assert 0 < sum(first) < len(first)


# -- handles and lifecycle -----------------------------------------------------------------


async def test_handles_are_context_managers_and_removal_is_idempotent(
    proxy: FaultProxy,
) -> None:
    async with proxy.latency(10) as lat:
        with proxy.bandwidth(100) as bw:
            assert [*proxy.toxics] == [lat, bw]
            assert isinstance(bw.toxic, Bandwidth) and bw.toxic.rate == 100
        assert [*proxy.toxics] == [lat]
    assert [*proxy.toxics] == []
    lat.remove()
    proxy.remove(lat)
    held = [proxy.blackhole(), proxy.slow_close(5), proxy.limit_data(1)]
    assert len(proxy.toxics) == len(held)
    proxy.clear()
    assert [*proxy.toxics] == []
    async with FaultProxy(upstream=("127.0.0.1", 1)) as other:
        with pytest.raises(ValueError):
            other.remove(lat)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Latency(-1),
        lambda: Latency(10, jitter=float("nan")),
        lambda: Bandwidth(0),
        lambda: LimitData(-1),
        lambda: ResetPeer(after=-5),
        lambda: SlowClose(float("inf")),
        lambda: Slicer(0),
        lambda: Slicer(10, size_variation=10),
        lambda: Latency(10, toxicity=1.5),
        lambda: Latency(10, direction="sideways"),  # type: ignore[arg-type]
    ],
)
def test_bad_toxic_parameters_raise(make: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        make()


async def test_close_cuts_every_connection_and_leaves_no_task(echo: TcpServer) -> None:
    before = asyncio.all_tasks()
    proxy = FaultProxy(upstream=echo.address)
    await proxy.start()
    proxy.latency(50)
    proxy.bandwidth(5)
    proxy.reset_peer(after=60_000)  # a timer task per connection
    clients = [await asyncio.open_connection(proxy.host, proxy.port) for _ in range(3)]
    try:
        for _, writer in clients:
            writer.write(bytes(20_000))
        async with asyncio.timeout(WAIT):
            await proxy.wait_connections(3)
        await proxy.close()
        assert proxy.connections == 0
        for reader, writer in clients:
            _, how = await Client(reader, writer).read_until_closed()
            assert how == "eof"
        leftover = {t for t in asyncio.all_tasks() - before if t.get_name() != "test-server"}
        assert leftover == set()
        with pytest.raises(RuntimeError):
            proxy.latency(1)
    finally:
        for _, writer in clients:
            writer.transport.abort()
            with suppress(OSError):
                await writer.wait_closed()


# -- the pure parts ------------------------------------------------------------------------


def test_token_bucket_starts_empty_and_caps_idle_credit() -> None:
    bucket = TokenBucket(1000.0, now=0.0, burst=100.0)
    assert bucket.reserve(500, now=0.0) == pytest.approx(0.5)
    assert bucket.reserve(100, now=0.5) == pytest.approx(0.1)
    assert bucket.reserve(100, now=100.0) == 0.0  # 100 s idle buys only the burst
    assert bucket.reserve(100, now=100.0) == pytest.approx(0.1)
    assert bucket.piece_size == 100


def test_token_bucket_total_wait_is_at_least_size_over_rate() -> None:
    bucket = TokenBucket(10_000.0, now=0.0)
    now = 0.0
    for _ in range(50):
        now += bucket.reserve(bucket.piece_size, now)
    assert now >= 50 * bucket.piece_size / 10_000.0 - 1e-9


def test_slice_sizes_add_up_and_stay_in_range() -> None:
    rng = random.Random(5)
    toxic = Slicer(10, size_variation=4)
    sizes = slice_sizes(1000, toxic, rng)
    assert sum(sizes) == 1000
    assert all(6 <= s <= 14 for s in sizes[:-1]) and 1 <= sizes[-1] <= 14
    assert slice_sizes(0, toxic, rng) == []


def test_latency_delay_is_latency_plus_or_minus_jitter_never_negative() -> None:
    rng = random.Random(9)
    delays = [latency_delay(Latency(100, jitter=30), rng) for _ in range(200)]
    assert all(0.07 <= d <= 0.13 for d in delays)
    assert len(set(delays)) > 1
    assert all(latency_delay(Latency(5, jitter=50), rng) >= 0 for _ in range(100))
