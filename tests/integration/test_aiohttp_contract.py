"""The aiohttp transport held to the transport contract (base.py) and to the websockets
transport's behaviour: what a review found it breaking, each case fixed since.

Where a test runs over both raw transports, the ``websocket`` case is the reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.frames import Frame, Opcode

from fake_server import FakeServer
from rtclient import Client, ConnectionLost, ProtocolError
from rtclient.testing import wait_until
from rtclient.transports import AiohttpConnection, AiohttpTransport, WebSocketTransport

from .conftest import FAST

TRANSPORTS = {"websocket": WebSocketTransport, "aiohttp": AiohttpTransport}


@pytest.fixture
def transport_name() -> str:
    return "aiohttp"


@contextlib.asynccontextmanager
async def ws_server(
    handler: Callable[[ServerConnection], Any], **options: Any
) -> AsyncIterator[str]:
    async with serve(handler, "127.0.0.1", 0, **options) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/"


def _raw_transport(conn: Any) -> asyncio.Transport:
    """The asyncio transport under a connection (test introspection only)."""
    ws = conn._ws
    if hasattr(ws, "_writer"):  # aiohttp ClientWebSocketResponse
        return ws._writer.transport  # type: ignore[no-any-return]
    return ws.transport  # type: ignore[no-any-return]  # websockets


# -- a cancelled large send is not overtaken by the next message ---------------------------


class GatedCompressExecutor(ThreadPoolExecutor):
    """The loop's default executor; zlib compress jobs wait for ``release`` once armed."""

    def __init__(self) -> None:
        super().__init__(max_workers=4)
        self.entered = threading.Event()
        self._go = threading.Event()

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        if getattr(fn, "__qualname__", "") != "Compress.compress":
            return super().submit(fn, *args, **kwargs)

        def gated() -> Any:
            self.entered.set()
            self._go.wait(10)
            return fn(*args, **kwargs)

        return super().submit(gated)

    def release(self) -> None:
        self._go.set()


@pytest.fixture
async def gated_executor() -> AsyncIterator[GatedCompressExecutor]:
    loop = asyncio.get_running_loop()
    executor = GatedCompressExecutor()
    loop.set_default_executor(executor)
    try:
        yield executor
    finally:
        executor.release()
        loop.set_default_executor(ThreadPoolExecutor())
        executor.shutdown(wait=False)


async def test_cancelled_large_send_is_not_overtaken(
    roomy_server: FakeServer, gated_executor: GatedCompressExecutor
) -> None:
    """A send() cancelled while aiohttp compresses a > 16 KiB frame in its executor.

    The Client keeps the message queued (its docs) and aiohttp still writes the frame
    later (shielded); the next message must not go out first (it did: the server logged
    one sender's messages out of order). With websockets a frame is handed to the socket
    before the first await, so this cannot happen there.
    """
    server = roomy_server
    alice = Client(
        server.ws_url, token=server.issue_token("alice"), transport="aiohttp", backoff=FAST
    )
    await alice.connect()
    try:
        await alice.join("order")
        big = "B" * 40_000  # over aiohttp's 16 KiB sync-compression limit: executor
        sending = asyncio.create_task(alice.send("order", big))
        await wait_until(gated_executor.entered.is_set)  # the frame is being compressed
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
        after = asyncio.create_task(alice.send("order", "after"))
        # The second frame must wait for the first: it queues on the send lock (it used
        # to be written at once, ahead of it).
        conn = alice._conn
        assert isinstance(conn, AiohttpConnection)
        await wait_until(lambda: _queued_on_send_lock(conn))
        assert server.room_events("order") == []
        gated_executor.release()
        await asyncio.wait_for(after, 5)
        await wait_until(lambda: len(server.room_events("order")) == 2)
        texts = [e["text"][:5] for e in server.room_events("order")]
        assert texts == ["BBBBB", "after"], f"server log order: {texts}"
    finally:
        await alice.close(flush=False)


# -- close() releases the socket when the peer stops reading -------------------------------


@pytest.mark.parametrize("name", ["websocket", "aiohttp"])
async def test_close_then_abort_release_the_socket_of_a_stalled_peer(
    name: str,
) -> None:
    """A peer that stops reading while our send buffer is full (a frozen server).

    close() gives up after close_timeout; the Client then abort()s if close did not
    return. Either way the socket must be gone. (On aiohttp close() used to return with
    the asyncio transport "closing" and hundreds of KB buffered — the fd and the TCP
    connection open for as long as the peer held them — and abort() did nothing, the
    response having no connection any more.)
    """

    stalled: list[ServerConnection] = []

    async def stall(ws: ServerConnection) -> None:
        stalled.append(ws)
        await ws.send(json.dumps({"type": "connected", "payload": {}}))
        ws.transport.pause_reading()
        await ws.wait_closed()

    async with ws_server(stall, max_size=None) as url:
        transport = TRANSPORTS[name](compression=False, close_timeout=0.3)
        conn = await transport.connect(url, token=None, open_timeout=2)
        raw = _raw_transport(conn)
        sock = raw.get_extra_info("socket")  # fileno() is -1 once really closed
        await conn.recv()
        blob = {"type": "blob", "payload": "z" * 200_000}
        sender: asyncio.Task[None] = asyncio.create_task(conn.send(blob))

        def blocked() -> bool:
            nonlocal sender
            if sender.done():  # the buffer took it: send another
                sender = asyncio.create_task(conn.send(blob))
                return False
            return raw.get_write_buffer_size() > 0  # the kernel buffer is full too

        await wait_until(blocked, timeout=10)
        try:
            async with asyncio.timeout(2):
                await conn.close()
        except TimeoutError:
            pass
        conn.abort()
        try:
            await wait_until(lambda: sock.fileno() == -1, timeout=2)
        finally:
            raw.abort()
            for peer in stalled:
                peer.transport.abort()
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)


# -- an empty close frame is code 1005 -----------------------------------------------------


@pytest.mark.parametrize("name", ["websocket", "aiohttp"])
async def test_close_frame_without_status_is_1005(name: str) -> None:
    """RFC 6455 § 7.1.5: a close frame without a status code means 1005."""

    async def empty_close(ws: ServerConnection) -> None:
        await ws.send(json.dumps({"type": "connected", "payload": {}}))
        ws.protocol.send_frame(Frame(Opcode.CLOSE, b""))
        ws.transport.write(b"".join(ws.protocol.data_to_send()))
        await ws.wait_closed()

    async with ws_server(empty_close) as url:
        conn = await TRANSPORTS[name]().connect(url, token=None, open_timeout=2)
        try:
            await conn.recv()
            with pytest.raises(ConnectionLost) as info:
                await asyncio.wait_for(conn.recv(), 5)
            assert info.value.code == 1005
        finally:
            await conn.close()


# -- send() on a lost connection reports no close code -------------------------------------


@pytest.mark.parametrize("name", ["websocket", "aiohttp"])
async def test_send_on_a_dropped_link_reports_no_close_code(server: FakeServer, name: str) -> None:
    """No close frame arrived (TCP cut): send() must say code None, as recv() does."""
    conn = await TRANSPORTS[name]().connect(
        server.ws_url, token=server.issue_token("probe"), open_timeout=2
    )
    try:
        await conn.recv()  # connected
        await server.drop_connections()
        with pytest.raises(ConnectionLost) as lost:
            while True:
                await asyncio.wait_for(conn.recv(), 5)
        assert lost.value.code is None
        with pytest.raises(ConnectionLost) as info:
            await conn.send({"type": "ping", "id": "p", "payload": {}})
        assert info.value.code is None, f"send reported close code {info.value.code}"
    finally:
        await conn.close()


# -- the proxy configured in the environment is used ---------------------------------------


@contextlib.asynccontextmanager
async def http_proxy() -> AsyncIterator[list[str]]:
    """A minimal HTTP proxy (CONNECT, or an absolute-URI request); yields what it tunnelled."""
    tunnelled: list[str] = []
    tasks: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, rest = head.split(b"\r\n", 1)
        method, target, version = request_line.decode().split(" ")
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:  # GET ws://host:port/path: forward in origin form
            authority, _, path = target.split("://", 1)[1].partition("/")
            host, port = authority.rsplit(":", 1)
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            up_writer.write(f"{method} /{path} {version}\r\n".encode() + rest)
        tunnelled.append(target)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(handle(reader, writer))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    proxy = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = proxy.sockets[0].getsockname()[1]
    with pytest.MonkeyPatch.context() as env:
        for var in ("no_proxy", "NO_PROXY", "ws_proxy", "WS_PROXY", "all_proxy", "ALL_PROXY"):
            env.delenv(var, raising=False)
        for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
            env.setenv(var, f"http://127.0.0.1:{port}")
        try:
            yield tunnelled
        finally:
            proxy.close()
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await proxy.wait_closed()


@pytest.mark.parametrize("name", ["websocket", "aiohttp"])
async def test_uses_the_proxy_from_the_environment(server: FakeServer, name: str) -> None:
    """Both raw transports connect through HTTPS_PROXY / HTTP_PROXY (websockets' rules)."""
    async with http_proxy() as tunnelled:
        client = Client(
            server.ws_url, token=server.issue_token("behind-proxy"), transport=name, backoff=FAST
        )
        try:
            await client.connect()
        finally:
            await client.close()
        assert tunnelled, "the connection bypassed the proxy configured in the environment"


async def test_a_socks_proxy_is_a_clear_error_on_aiohttp(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiohttp has no SOCKS: connecting around the configured proxy would be a surprise."""
    monkeypatch.setenv("ws_proxy", "socks5h://127.0.0.1:1080")
    client = Client(server.ws_url, token=server.issue_token("a"), transport="aiohttp")
    with pytest.raises(ProtocolError, match="HTTP proxies only"):
        await client.connect()
    assert client.stats()["attempts"] == 1  # fatal: a configuration to change, not a retry


# -- max_size=None means no limit, as on websockets ----------------------------------------


async def test_max_size_none_means_no_limit(server: FakeServer) -> None:
    """WebSocketTransport(max_size=None) means no limit; so must AiohttpTransport's.

    (It was a TypeError per attempt, unmapped, leaving the 101 response unreleased.)
    """
    conn = await AiohttpTransport(max_size=None).connect(
        server.ws_url, token=server.issue_token("probe"), open_timeout=2
    )
    await conn.close()


def _queued_on_send_lock(conn: AiohttpConnection) -> bool:
    """Someone waits for the connection's send lock (asyncio.Lock keeps its waiters)."""
    return bool(getattr(conn._send_lock, "_waiters", None))


def _aiohttp_send_tasks() -> list[asyncio.Task[Any]]:
    return [
        t
        for t in asyncio.all_tasks()
        if not t.done() and "_send_compressed_frame_async" in t.get_coro().__qualname__
    ]


async def test_close_waits_for_a_frame_still_being_written(
    server: FakeServer, gated_executor: GatedCompressExecutor
) -> None:
    """close() after a cancelled large send (the Client does this whenever a connection
    ends while its writer is in a > 16 KiB send).

    close() must wait for the frame (bounded by close_timeout). It used to return, its
    close frame out ahead of the data frame, with aiohttp's shielded send task still
    pending: a task left behind, which then failed on the closed transport with nobody
    to retrieve its exception ("Task exception was never retrieved").
    """
    loop = asyncio.get_running_loop()
    errors: list[str] = []
    loop.set_exception_handler(lambda _, context: errors.append(str(context.get("message"))))
    try:
        conn = await AiohttpTransport().connect(
            server.ws_url, token=server.issue_token("probe"), open_timeout=2
        )
        await conn.recv()
        sending = asyncio.create_task(
            conn.send({"type": "ping", "id": "big", "payload": {"pad": "x" * 40_000}})
        )
        await wait_until(gated_executor.entered.is_set)
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
        closing = asyncio.create_task(conn.close())
        # close() must wait for the frame (queued on the send lock until the gate opens);
        # it used to return at once, leaving aiohttp's send task behind.
        await wait_until(lambda task=closing: task.done() or _queued_on_send_lock(conn))
        left_behind = [repr(t)[:80] for t in _aiohttp_send_tasks()] if closing.done() else []
        gated_executor.release()
        await asyncio.wait_for(closing, 5)
        await wait_until(lambda: not _aiohttp_send_tasks())
        del sending, closing
        gc.collect()
    finally:
        loop.set_exception_handler(None)
    assert (left_behind, errors) == ([], [])
