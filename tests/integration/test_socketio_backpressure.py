"""Backpressure holds over Socket.IO: a stuck application stops engine.io reading."""

from __future__ import annotations

import asyncio
import logging

import pytest

from fake_server import FakeServer
from rtclient import Event
from rtclient.testing import wait_until
from rtclient.transports.socketio import SocketIOConnection, SocketIOTransport

from .conftest import MakeClient


@pytest.fixture
def transport_name() -> str:
    return "socketio"


async def test_a_slow_handler_stops_engineio_reading(
    server: FakeServer, make_client: MakeClient
) -> None:
    flood = await make_client("flood", rooms=("firehose",), max_in_flight=64)
    slow = await make_client("slow", rooms=("firehose",), max_pending_events=50)
    conn = slow._conn
    assert isinstance(conn, SocketIOConnection)
    inbox = conn._inbox
    limit = getattr(SocketIOTransport(), "max_queue", 64)
    gate = asyncio.Event()
    got: list[int] = []

    def queued() -> int:  # (an asyncio.Queue before the fix)
        return inbox.qsize() if isinstance(inbox, asyncio.Queue) else len(inbox)

    async def handler(event: Event) -> None:
        await gate.wait()  # the application is stuck
        assert event.event_id is not None
        got.append(event.event_id)

    slow.on("chat:message", handler)
    await asyncio.gather(*(flood.send("firehose", f"m{i}") for i in range(3000)))
    # The client stopped reading (its queue to the handlers is full), then engine.io's
    # reader stopped too (the connection's inbox is full): the rest waits in TCP.
    await wait_until(
        lambda: (
            slow.stats()["read_pauses"] >= 1
            and (getattr(inbox, "waits", 0) >= 1 or queued() > 1000)
        )
    )
    held = queued()
    assert held <= limit + 1, f"{held} events piled up in the Socket.IO inbox"
    assert slow._dispatcher.backlog <= 51
    delivered = slow.stats()["delivered"]
    assert delivered < 3000
    engineio_tasks = [t for t in asyncio.all_tasks() if "_handle_eio_message" in repr(t)]
    assert len(engineio_tasks) <= 1
    gate.set()
    await wait_until(lambda: len(got) == 3000, timeout=30)
    assert got == list(range(1, 3001))  # nothing lost, in order
    print(
        f"\n[socketio backpressure] inbox held {held} (limit {limit}), "
        f"{delivered} of 3000 delivered while stuck, {inbox.waits} reader pauses"
    )


async def test_a_server_disconnect_handled_in_the_reader_is_clean(
    server: FakeServer, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    # python-socketio answers a DISCONNECT packet by disconnecting engine.io, which
    # waits for engine.io's reader: the very task that now handles the packet.
    client = await make_client("kicked", rooms=("r",))
    reconnects = client.stats()["reconnects"]
    await server.close_all(1012)
    await wait_until(lambda: client.stats()["reconnects"] > reconnects)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
