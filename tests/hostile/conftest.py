"""Fixtures for the hostile-server catalogue: a HostileServer and fast clients of it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from rtclient import Backoff, Client
from rtclient.events import ConnectionState, ErrorEvent, Event, Gap, StateChanged
from rtclient.testing import HostileServer

# Millisecond backoff: the reconnect logic runs for real, only faster.
FAST = Backoff(base=0.01, cap=0.2, first_delay=0.01, stable_after=0.3)
RAW = ["websocket", "aiohttp"]
ALL = [*RAW, "socketio"]


class Seen:
    """What a client delivered: chat messages, state changes, gaps, error events."""

    def __init__(self, client: Client) -> None:
        self.messages: list[Event] = []
        self.states: list[StateChanged] = []
        self.gaps: list[Gap] = []
        self.errors: list[ErrorEvent] = []
        client.on("chat:message", self.messages.append)
        client.on("state", self.states.append)
        client.on("gap", self.gaps.append)
        client.on("error", self.errors.append)

    def ids(self, room: str = "lobby") -> list[int | None]:
        return [m.event_id for m in self.messages if m.room == room]

    def codes(self) -> list[str]:
        return [e.code for e in self.errors]

    def delays(self) -> list[float]:
        """The delays announced before each reconnect attempt."""
        return [
            s.delay
            for s in self.states
            if s.new is ConnectionState.RECONNECTING and s.delay is not None
        ]


MakeClient = Callable[..., Awaitable[tuple[Client, Seen]]]


@pytest.fixture
async def srv() -> AsyncIterator[HostileServer]:
    async with HostileServer() as server:
        yield server


@pytest.fixture
async def make_client(srv: HostileServer) -> AsyncIterator[MakeClient]:
    """``client, seen = await make_client(transport, rooms=[...], connect=True, **options)``.

    Fast backoff, short timeouts, no heartbeat unless asked; closed at teardown, and the
    test fails if the client left a task behind.
    """
    clients: list[Client] = []
    before = asyncio.all_tasks()

    async def make(
        transport: str, *, rooms: tuple[str, ...] = (), connect: bool = True, **options: Any
    ) -> tuple[Client, Seen]:
        options.setdefault("token", "hostile-test-token")
        options.setdefault("backoff", FAST)
        options.setdefault("ack_timeout", 1.0)
        options.setdefault("connect_timeout", 1.0)
        options.setdefault("ping_interval", None)
        client = Client(srv.url_for(transport), transport=transport, **options)
        seen = Seen(client)
        clients.append(client)
        if connect:
            async with asyncio.timeout(5):
                await client.connect()
                for room in rooms:
                    await client.join(room)
        return client, seen

    yield make
    for client in clients:
        if client.state is ConnectionState.CLOSED:
            continue  # ended by the test (a fatal error): a test that cares closed it itself
        async with asyncio.timeout(5):
            await client.close(flush=False)
    leftover = {t for t in asyncio.all_tasks() - before if "rtclient" in t.get_name()}
    assert not leftover, f"tasks left behind: {leftover}"
    clients.clear()
