"""A slow application pushes back on the server instead of growing memory; volatile sends."""

from __future__ import annotations

import asyncio

import pytest

from fake_server import FakeServer
from rtclient import ConnectionState, Event
from rtclient.testing import wait_until

from .conftest import MakeClient


@pytest.fixture(params=["websocket", "aiohttp"])
def transport_name(request: pytest.FixtureRequest) -> str:
    """Every test in this module runs over both raw WebSocket transports."""
    return str(request.param)


async def test_a_slow_handler_stops_the_client_reading(
    server: FakeServer, make_client: MakeClient
) -> None:
    flood = await make_client("flood", rooms=("firehose",), max_in_flight=64)
    slow = await make_client("slow", rooms=("firehose",), max_pending_events=50)
    gate = asyncio.Event()
    got: list[int] = []

    async def handler(event: Event) -> None:
        await gate.wait()  # the application is stuck
        assert event.event_id is not None
        got.append(event.event_id)

    slow.on("chat:message", handler)
    sends = [asyncio.create_task(flood.send("firehose", f"m{i}")) for i in range(3000)]
    await asyncio.gather(*sends)  # the server accepted everything
    await wait_until(lambda: slow.stats()["read_pauses"] >= 1)
    # Stuck handler: the client holds at most the bound (+ one in the handler); the
    # rest waits in the network buffers, not in the client's memory.
    received = slow.stats()["delivered"]
    assert slow._dispatcher.backlog <= 51
    assert received < 3000
    gate.set()
    await wait_until(lambda: len(got) == 3000, timeout=30)
    assert got == list(range(1, 3001))  # nothing lost, in order
    print(
        f"\n[backpressure] {received} of 3000 read while the handler was stuck "
        f"(bound 50), {slow.stats()['read_pauses']} read pauses"
    )


async def test_a_slow_events_iterator_is_bounded_too(
    server: FakeServer, make_client: MakeClient
) -> None:
    flood = await make_client("flood", rooms=("r",))
    slow = await make_client("slow", rooms=("r",), max_pending_events=20)
    iterator = slow.events()
    first = asyncio.create_task(anext(iterator))
    await wait_until(lambda: slow._dispatcher.streams == 1)  # subscribed before the flood
    await asyncio.gather(*(flood.send("r", f"m{i}") for i in range(500)))
    head = await first
    await wait_until(lambda: slow.stats()["read_pauses"] >= 1)
    texts = [head.text] if isinstance(head, Event) and head.name == "chat:message" else []
    async for item in iterator:
        if isinstance(item, Event) and item.name == "chat:message":
            texts.append(item.text)
            if len(texts) == 500:
                break
    assert texts == [f"m{i}" for i in range(500)]


async def test_volatile_sends_are_dropped_when_offline_and_counted(
    server: FakeServer, make_client: MakeClient
) -> None:
    alice = await make_client("alice", rooms=("live",))
    assert alice.send_volatile("live", "now")
    await wait_until(lambda: len(server.room_events("live")) == 1)
    await server.reject_handshakes(10**6, 503)
    await server.drop_connections()
    await alice.wait_for(ConnectionState.RECONNECTING)
    assert not alice.send_volatile("live", "never queued")
    assert alice.stats()["volatile_dropped"] == 1 and alice.stats()["queued"] == 0
    await server.reject_handshakes(0, 503)
    await alice.wait_for(ConnectionState.CONNECTED)
    await alice.send("live", "durable")
    assert [e["text"] for e in server.room_events("live")] == ["now", "durable"]
