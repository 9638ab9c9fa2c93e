"""The raw WebSocket transport on aiohttp: what differs from websockets, on a real socket.

The shared scenarios (recovery, sending, reconnect policy, heartbeats, backpressure)
run over it in their own modules; these are the transport's own edges.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.server import ServerConnection, serve

from fake_server import FakeServer
from rtclient import (
    Client,
    ConnectionLost,
    ErrorEvent,
    HandshakeRejected,
    ProtocolError,
    TransportError,
    Unauthorized,
)
from rtclient.testing import FaultProxy, wait_until
from rtclient.transports import AiohttpConnection, AiohttpTransport

from .conftest import FAST, MakeClient, Recorder


@pytest.fixture
def transport_name() -> str:
    return "aiohttp"


async def _open(server: FakeServer, **options: object) -> AiohttpConnection:
    transport = AiohttpTransport(**options)  # type: ignore[arg-type]
    return await transport.connect(
        server.ws_url, token=server.issue_token("probe"), open_timeout=2.0
    )


async def test_codecs_are_negotiated_and_share_a_room_with_websockets_clients(
    server: FakeServer, make_client: MakeClient
) -> None:
    packed = await make_client("packed", rooms=("mixed",), codec="msgpack")
    plain = await make_client("plain", rooms=("mixed",), transport="websocket")
    assert isinstance(packed._conn, AiohttpConnection)
    assert packed._conn.codec.name == "msgpack"
    seen_packed, seen_plain = Recorder(packed), Recorder(plain)
    await packed.send("mixed", "from aiohttp + msgpack ✓")
    await plain.send("mixed", "from websockets + json")
    await wait_until(lambda: len(seen_packed.messages) == 2 and len(seen_plain.messages) == 2)
    assert (
        seen_packed.texts()
        == seen_plain.texts()
        == [
            "from aiohttp + msgpack ✓",
            "from websockets + json",
        ]
    )


async def _request(conn: AiohttpConnection, envelope: dict[str, object]) -> dict[str, object]:
    """Send ``envelope`` and return the ack with its id (skipping other frames)."""
    await conn.send(envelope)
    while True:
        frame = await conn.recv()
        assert isinstance(frame, dict)
        if frame.get("type") == "ack" and frame.get("id") == envelope["id"]:
            return frame


async def test_compression_window_bits_and_off(server: FakeServer) -> None:
    on = await _open(server)
    narrow = await _open(server, compression_window_bits=10)
    off = await _open(server, compression=False)
    try:
        agreed = narrow._ws._response.headers["Sec-WebSocket-Extensions"]
        assert on.compressed and narrow.compressed and not off.compressed
        assert "server_max_window_bits=10" in agreed  # the server's window, which we inflate
        for conn in (on, narrow, off):
            welcome = await conn.recv()
            assert isinstance(welcome, dict) and welcome["type"] == "connected"
            big = {"type": "ping", "id": "p", "payload": {"pad": "x" * 5000}}
            assert (await _request(conn, big))["id"] == "p"
    finally:
        for conn in (on, narrow, off):
            await conn.close()
    assert on._session.closed and narrow._session.closed and off._session.closed


async def _bytes_sent(proxy: FaultProxy, conn: AiohttpConnection, pad: str) -> int:
    """Bytes that reach the server for one acknowledged request carrying ``pad``."""
    before = proxy.stats.bytes_upstream
    await _request(conn, {"type": "ping", "id": pad[:8], "payload": {"pad": pad}})
    return proxy.stats.bytes_upstream - before


async def test_small_messages_go_uncompressed_and_large_ones_compressed(
    server: FakeServer,
) -> None:
    async with FaultProxy(upstream=(server.host, server.port)) as proxy:
        transport = AiohttpTransport()  # threshold 256 bytes, as on the websockets transport
        conn = await transport.connect(
            proxy.url("ws", "/ws"), token=server.issue_token("probe"), open_timeout=2
        )
        try:
            await conn.recv()
            assert conn.compressed
            small = await _bytes_sent(proxy, conn, "s" * 100)
            assert small >= 100  # as it is: deflate would make ~20 bytes of these 100
            assert conn._ws._writer._compressobj is None  # no zlib state held for it
            large = await _bytes_sent(proxy, conn, "l" * 20_000)
            assert large < 1_000  # compressed, and the server inflated it (it answered)
            again = await _bytes_sent(proxy, conn, "m" * 20_000)
            assert again < 1_000  # each large message on its own context
        finally:
            await conn.close()


@pytest.fixture
async def garbage_server() -> AsyncIterator[str]:
    """Welcomes, then sends a frame that is not JSON, then a real event."""

    async def handler(ws: ServerConnection) -> None:
        await ws.send(json.dumps({"type": "connected", "payload": {"userId": "x"}}))
        await ws.send("{not json")
        await ws.send(b"\x00binary where text was negotiated")
        await ws.send(json.dumps({"type": "notice", "payload": {"text": "still here"}}))
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/"


async def test_malformed_frames_are_counted_and_the_connection_stays(garbage_server: str) -> None:
    client = Client(garbage_server, token="t", transport="aiohttp", backoff=FAST)
    errors: list[ErrorEvent] = []
    notices: list[object] = []
    client.on("error", errors.append)
    client.on("notice", lambda event: notices.append(event.data))
    await client.connect()
    await wait_until(lambda: len(notices) == 1)
    assert client.stats()["malformed"] == 2
    assert len(errors) == 2 and client.stats()["reconnects"] == 0
    await client.close()


async def test_ping_measures_the_round_trip_and_abort_ends_the_reader(server: FakeServer) -> None:
    conn = await _open(server)
    try:
        await conn.recv()  # connected
        reader = asyncio.create_task(conn.recv())
        assert await conn.ping() > 0  # measured, whatever the machine's speed
        await server.set_latency(80)
        assert await conn.ping() >= 0.08  # the server holds its pong back 80 ms
        await server.set_latency(0)
        conn.abort()
        with pytest.raises(ConnectionLost) as info:
            await asyncio.wait_for(reader, 2)
        assert info.value.code is None  # no close frame: a dead link
        with pytest.raises(ConnectionLost):
            await conn.ping()
    finally:
        await conn.close()


async def test_server_close_codes_reach_the_client(server: FakeServer) -> None:
    conn = await _open(server)
    try:
        await conn.recv()
        await server.expire_tokens()  # closes every connection with 4002
        with pytest.raises(ConnectionLost) as info:
            while True:
                await conn.recv()
        assert info.value.code == 4002
    finally:
        await conn.close()


async def test_handshake_failures_are_typed(server: FakeServer) -> None:
    transport = AiohttpTransport()
    await server.reject_handshakes(1, 503, retry_after=0.25)
    with pytest.raises(HandshakeRejected) as rejected:
        await transport.connect(server.ws_url, token=server.issue_token("a"), open_timeout=2)
    assert (rejected.value.status, rejected.value.retry_after) == (503, 0.25)
    with pytest.raises(HandshakeRejected) as plain:  # an HTTP endpoint that does not upgrade
        await transport.connect(f"{server.ws_url[:-3]}/health", token=None, open_timeout=2)
    assert plain.value.status == 200  # as with websockets; the client gives up on it
    with pytest.raises(ProtocolError):
        await transport.connect("ws://[not a host", token=None, open_timeout=2)
    probe = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    with pytest.raises(TransportError):  # nothing listens any more: connection refused
        await transport.connect(f"ws://127.0.0.1:{port}/", token=None, open_timeout=2)


@contextlib.asynccontextmanager
async def tcp_peer(answer: bytes) -> AsyncIterator[str]:
    """A TCP server that reads the upgrade request, writes ``answer`` and hangs up."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    peer = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"ws://127.0.0.1:{peer.sockets[0].getsockname()[1]}/"
    finally:
        peer.close()
        await peer.wait_closed()


async def test_a_peer_that_is_not_http_is_a_protocol_error() -> None:
    async with tcp_peer(b"SSH-2.0-OpenSSH_9.6\r\n\r\n") as url:
        with pytest.raises(ProtocolError):
            await AiohttpTransport().connect(url, token=None, open_timeout=2)


async def test_an_eof_before_the_response_is_retried_not_fatal() -> None:
    """A TCP proxy in front of a restarting server accepts and closes at once."""
    async with tcp_peer(b"") as url:
        with pytest.raises(TransportError):
            await AiohttpTransport().connect(url, token=None, open_timeout=2)


async def test_a_bad_token_is_fatal_after_one_attempt(
    server: FakeServer, make_client: MakeClient
) -> None:
    client = await make_client("mallory", connect=False, token="not-a-jwt")
    with pytest.raises(Unauthorized):
        await client.connect()
    assert client.stats()["attempts"] == 1
