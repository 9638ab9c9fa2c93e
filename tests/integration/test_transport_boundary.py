"""What leaves a transport is rtclient's: TLS failures, foreign exceptions, odd handshakes.

Each scripted server here is a few lines: a TLS server with a certificate the client does
not trust (made by trustme), a plain server behind a ``wss://`` / ``https://`` URL, a
raw TCP server that answers the ClientHello with a TLS alert, and one that completes
the WebSocket handshake with a subprotocol the client never offered.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trustme
from websockets.asyncio.server import ServerConnection, serve

from fake_server import FakeServer
from rtclient import Backoff, Client, ConnectionState, ProtocolError, TLSError, TransportError
from rtclient.testing import wait_until
from rtclient.transports import AiohttpTransport, WebSocketTransport
from rtclient.transports.boundary import Boundary

TRANSPORTS = ["websocket", "aiohttp", "socketio"]
RAW = ["websocket", "aiohttp"]
TLS_ALERT_PROTOCOL_VERSION = bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46])
TLS_ALERT_INTERNAL_ERROR = bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x50])
TLS_ALERT_HANDSHAKE_FAILURE = bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28])


def secure_url(transport: str, port: int) -> str:
    return f"https://127.0.0.1:{port}" if transport == "socketio" else f"wss://127.0.0.1:{port}/ws"


def client(url: str, transport: str) -> Client:
    return Client(
        url,
        token="t0ken-that-is-long-enough",
        transport=transport,  # type: ignore[arg-type]
        backoff=Backoff(base=0.01, cap=0.05, first_delay=0.01),
        connect_timeout=5.0,
    )


async def fails_fatally(c: Client) -> BaseException:
    """connect() raises at once (no retry loop) and close() is clean."""
    with pytest.raises(Exception) as info:
        async with asyncio.timeout(10):
            await c.connect()
    assert c.stats()["attempts"] == 1, "a fatal failure must not be retried"
    await c.close()  # no ExceptionGroup, no leftover task
    return info.value


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_server(ca: trustme.CA) -> AsyncIterator[int]:
    """A WebSocket server over TLS, with a certificate from a CA the client does not know."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)

    async def handler(ws: ServerConnection) -> None:
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, ssl=context) as server:
        yield next(iter(server.sockets)).getsockname()[1]


async def raw_server(
    answer: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_untrusted_certificate_is_a_fatal_tls_error(
    transport: str, tls_server: int
) -> None:
    error = await fails_fatally(client(secure_url(transport, tls_server), transport))
    assert isinstance(error, TLSError), repr(error)
    assert error.kind == "certificate"
    assert "certificate verification failed: unable to get local issuer" in str(error)


@pytest.mark.parametrize("transport", RAW)
async def test_the_same_server_with_its_ca_trusted_connects(
    transport: str, tls_server: int, ca: trustme.CA
) -> None:
    # The control: the server above is a working TLS server; only the trust was missing.
    context = ssl.create_default_context()
    ca.configure_trust(context)
    opener = (
        WebSocketTransport(ssl=context)
        if transport == "websocket"
        else AiohttpTransport(ssl=context)
    )
    conn = await opener.connect(secure_url(transport, tls_server), token=None, open_timeout=5)
    await conn.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_tls_to_a_plain_server_is_fatal_and_says_tls(transport: str) -> None:
    async with FakeServer() as plain:
        error = await fails_fatally(client(secure_url(transport, plain.port), transport))
    assert isinstance(error, TLSError), repr(error)
    assert error.kind == "not_tls"
    assert "TLS" in str(error) and "does not speak TLS" in str(error)


@pytest.mark.parametrize("transport", RAW)
async def test_a_plain_server_that_resets_the_tls_handshake_is_retried_and_said(
    transport: str,
) -> None:
    # websockets' server resets a ClientHello instead of answering it: that looks like
    # any reset (a restarting server behind a proxy), so it is retried, but the error
    # says TLS.
    async def handler(ws: ServerConnection) -> None:
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as plain:
        port = next(iter(plain.sockets)).getsockname()[1]
        c = client(secure_url(transport, port), transport)
        errors: list[BaseException] = []
        c.on("state", lambda change: change.error is not None and errors.append(change.error))
        attempt = asyncio.ensure_future(c.connect())
        try:
            await wait_until(lambda: c.stats()["attempts"] >= 2)
        finally:
            attempt.cancel()
            await c.close()
    assert errors and all(isinstance(e, TransportError) for e in errors)
    assert "over TLS" in str(errors[0]) and "ws://" in str(errors[0])


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_tls_version_refusal_is_fatal_and_says_so(transport: str) -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(5)  # the ClientHello's record header
        writer.write(TLS_ALERT_PROTOCOL_VERSION)
        await writer.drain()
        writer.close()

    server, port = await raw_server(refuse)
    async with server:
        error = await fails_fatally(client(secure_url(transport, port), transport))
    assert isinstance(error, TLSError), repr(error)
    assert error.kind == "version" and "TLS version" in str(error)


@pytest.mark.parametrize("transport", RAW)
async def test_no_settings_in_common_is_a_fatal_handshake_tls_error(transport: str) -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(5)
        writer.write(TLS_ALERT_HANDSHAKE_FAILURE)  # no cipher suite in common, say
        await writer.drain()
        writer.close()

    server, port = await raw_server(refuse)
    async with server:
        error = await fails_fatally(client(secure_url(transport, port), transport))
    assert isinstance(error, TLSError), repr(error)
    assert error.kind == "handshake" and "HANDSHAKE_FAILURE" in str(error)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_servers_internal_error_alert_is_retried_and_says_tls(transport: str) -> None:
    # internal_error (alert 80) is the server failing, not a certificate or a version
    # both sides lack: a TLS front end that is restarting or overloaded. A bot must
    # come back once it recovers, not stop for good.
    async def fail(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(5)  # the ClientHello's record header
        writer.write(TLS_ALERT_INTERNAL_ERROR)
        await writer.drain()
        writer.close()

    server, port = await raw_server(fail)
    async with server:
        c = client(secure_url(transport, port), transport)
        errors: list[BaseException] = []
        c.on("state", lambda change: change.error is not None and errors.append(change.error))
        attempt = asyncio.ensure_future(c.connect())
        try:
            await wait_until(lambda: c.stats()["attempts"] >= 2 or attempt.done())
            assert not attempt.done(), f"stopped at once: {attempt.exception()!r}"
        finally:
            attempt.cancel()
            await c.close()
    assert errors and all(type(e) is TransportError for e in errors), errors
    assert "TLS" in str(errors[0]) and "INTERNAL_ERROR" in str(errors[0])


@pytest.mark.parametrize("transport", RAW)
async def test_a_subprotocol_that_was_not_offered_is_a_fatal_protocol_error(transport: str) -> None:
    async def handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(
            hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
        )
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\nSec-WebSocket-Protocol: chat.v9\r\n\r\n"
        )
        await writer.drain()
        await reader.read()  # until the client goes
        writer.close()

    server, port = await raw_server(handshake)
    async with server:
        error = await fails_fatally(client(f"ws://127.0.0.1:{port}/ws", transport))
    assert isinstance(error, ProtocolError), repr(error)
    assert "chat.v9" in str(error)


async def test_a_socks_proxy_without_python_socks_is_a_clear_fatal_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import websockets.asyncio.client as ws_client

    async def without_python_socks(*args: object, **kwargs: object) -> None:
        # What websockets does when python-socks is not installed.
        raise ImportError("connecting through a SOCKS proxy requires python-socks")

    monkeypatch.setattr(ws_client, "connect_socks_proxy", without_python_socks)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ws_proxy", "socks5h://127.0.0.1:1080")
    error = await fails_fatally(client("ws://127.0.0.1:9/ws", "websocket"))
    assert isinstance(error, ProtocolError), repr(error)
    assert "python-socks" in str(error)
    assert isinstance(error.__cause__, ImportError)


def test_an_unknown_exception_becomes_a_transport_error_from_the_original() -> None:
    boundary = Boundary("somelib", lambda exc: None)
    with pytest.raises(TransportError) as info, boundary:
        raise KeyError("odd")
    assert isinstance(info.value.__cause__, KeyError)
    assert "somelib" in str(info.value) and "KeyError" in str(info.value)
    with pytest.raises(asyncio.CancelledError), boundary:  # not an error: passes through
        raise asyncio.CancelledError


@pytest.mark.parametrize("transport", RAW)
async def test_each_url_of_a_list_gets_its_own_tls_name(transport: str, ca: trustme.CA) -> None:
    """Failover between two TLS servers: the certificate is checked against (and SNI
    sent for) the host of the URL being tried, not the first one's."""
    seen: dict[str, list[str | None]] = {"a": [], "b": []}

    def server_context(name: str, key: str) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(name).configure_cert(context)
        context.sni_callback = lambda _sock, sni, _ctx: seen[key].append(sni)  # type: ignore[assignment,misc,return-value]
        return context

    async def refuse_after_handshake(ws: ServerConnection) -> None:
        await ws.close(1011, "not today")  # retryable: the client moves on

    trust = ssl.create_default_context()
    ca.configure_trust(trust)
    opener = (
        WebSocketTransport(ssl=trust) if transport == "websocket" else AiohttpTransport(ssl=trust)
    )
    async with (
        serve(refuse_after_handshake, "127.0.0.1", 0, ssl=server_context("localhost", "a")) as a,
        serve(refuse_after_handshake, "127.0.0.1", 0, ssl=server_context("127.0.0.1", "b")) as b,
    ):
        port_a = next(iter(a.sockets)).getsockname()[1]
        port_b = next(iter(b.sockets)).getsockname()[1]
        c = Client(
            [f"wss://localhost:{port_a}/ws", f"wss://127.0.0.1:{port_b}/ws"],
            url_order="given",
            token="t0ken-that-is-long-enough",
            transport=opener,
            backoff=Backoff(base=0.01, cap=0.05),
            connect_timeout=5.0,
        )
        await c.connect(wait=False)
        try:
            await wait_until(lambda: len(seen["a"]) >= 2 and len(seen["b"]) >= 2, timeout=10)
            assert c.state is not ConnectionState.CLOSED  # no certificate error
        finally:
            await c.close()
    assert set(seen["a"]) == {"localhost"}  # SNI for the name
    assert set(seen["b"]) == {None}  # none for an IP address (RFC 6066)
