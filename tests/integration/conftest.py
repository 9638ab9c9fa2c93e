"""Fixtures: a FakeServer on port 0 and a factory of rtclient clients with ms backoff."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from fake_server import FakeServer
from rtclient import Backoff, Client

SECRET = "integration-secret-" + "0123456789abcdef" * 4

# Millisecond backoff: the reconnect logic runs for real, only faster.
FAST = Backoff(base=0.01, cap=0.2, first_delay=0.01, stable_after=0.3)

MakeClient = Callable[..., Awaitable[Client]]


TEST_SERVER: dict[str, Any] = {
    "secret": SECRET,
    "rate_per_second": 1_000_000.0,
    "rate_burst": 1_000_000,
    "close_timeout": 1.0,
    "auth_timeout": 2.0,
}
"""FakeServer settings of these tests: no rate limit to speak of, test-speed timeouts."""


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    """A FakeServer with no rate limit to speak of and test-speed timeouts."""
    async with FakeServer(**TEST_SERVER) as srv:
        yield srv


@pytest.fixture
def transport_name() -> str:
    """The transport ``make_client`` uses; modules parametrize it to run on each."""
    return "websocket"


@pytest.fixture
async def make_client(server: FakeServer, transport_name: str) -> AsyncIterator[MakeClient]:
    """``await make_client("alice", rooms=[...])``: a connected client; closed at teardown.

    ``gate=GatedTransport()`` puts the client behind a gate the test can cut.
    Teardown also checks that closing left no task of the client behind.
    """
    clients: list[Client] = []
    before = asyncio.all_tasks()

    async def make(
        user: str,
        *,
        rooms: tuple[str, ...] = (),
        connect: bool = True,
        gate: GatedTransport | None = None,
        **options: Any,
    ) -> Client:
        options.setdefault("token", server.issue_token(user))
        options.setdefault("backoff", FAST)
        options.setdefault("ack_timeout", 2.0)
        if gate is not None:
            gate.wrap(transport_name)
            options["transport"] = gate
        else:
            options.setdefault("transport", transport_name)
        url = server.sio_url if transport_name == "socketio" else server.ws_url
        client = Client(url, **options)
        clients.append(client)
        if connect:
            await client.connect()
            for room in rooms:
                await client.join(room)
        return client

    yield make
    for client in clients:
        await client.close(flush=False)
    leftover = {t for t in asyncio.all_tasks() - before if "rtclient" in t.get_name()}
    assert not leftover, f"tasks left behind: {leftover}"


class Recorder:
    """Collects what a client delivers: chat messages, state changes, gaps, errors."""

    def __init__(self, client: Client) -> None:
        self.messages: list[Any] = []
        self.states: list[Any] = []
        self.gaps: list[Any] = []
        self.errors: list[Any] = []
        client.on("chat:message", self.messages.append)
        client.on("state", self.states.append)
        client.on("gap", self.gaps.append)
        client.on("error", self.errors.append)

    def texts(self, room: str | None = None) -> list[str]:
        return [m.text for m in self.messages if room is None or m.room == room]

    def ids(self, room: str) -> list[int]:
        return [m.event_id for m in self.messages if m.room == room]


class GatedTransport:
    """A real transport that a test can cut and hold down for one client."""

    def __init__(self) -> None:
        self._inner: Any = None
        self._conn: Any = None
        self.open = asyncio.Event()
        self.open.set()

    def wrap(self, transport_name: str) -> None:
        from rtclient.transports import AiohttpTransport, SocketIOTransport, WebSocketTransport

        inner = {
            "websocket": WebSocketTransport,
            "aiohttp": AiohttpTransport,
            "socketio": SocketIOTransport,
        }
        self._inner = inner[transport_name]()

    async def connect(self, url: str, *, token: str | None, open_timeout: float) -> Any:
        from rtclient import TransportError

        if not self.open.is_set():
            raise TransportError("gate closed (test)")
        self._conn = await self._inner.connect(url, token=token, open_timeout=open_timeout)
        return self._conn

    def cut(self) -> None:
        """Drop the current connection and refuse new ones until :meth:`restore`."""
        self.open.clear()
        if self._conn is not None:
            self._conn.abort()

    def restore(self) -> None:
        self.open.set()


@pytest.fixture
async def bomb_server() -> AsyncIterator[str]:
    """A hostile server: welcomes, then sends a frame that inflates to 4 MB."""

    async def handler(ws: ServerConnection) -> None:
        await ws.send(json.dumps({"type": "connected", "payload": {"userId": "x"}}))
        await ws.send(json.dumps({"type": "error", "payload": {"pad": "0" * 4_000_000}}))
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/"


@pytest.fixture
async def roomy_server() -> AsyncIterator[FakeServer]:
    """The test server, with chat texts of up to 60 000 characters."""
    async with FakeServer(**TEST_SERVER, max_text_length=60_000) as srv:
        yield srv
