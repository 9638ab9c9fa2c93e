"""Nothing sent is lost: lost acks, offline sends, outbox limits, TTLs, error replies."""

from __future__ import annotations

import asyncio

import pytest

from fake_server import FakeServer
from rtclient import (
    AckTimeout,
    Backoff,
    ClientClosed,
    ConnectionState,
    MessageExpired,
    NotJoined,
    OutboxFull,
    RequestRejected,
)
from rtclient.testing import wait_until

from .conftest import GatedTransport, MakeClient, Recorder


@pytest.fixture(params=["websocket", "aiohttp", "socketio"])
def transport_name(request: pytest.FixtureRequest) -> str:
    """Every test in this module runs over each transport."""
    return str(request.param)


async def test_lost_acks_give_the_caller_the_original_event_id(
    server: FakeServer, make_client: MakeClient
) -> None:
    alice = await make_client("alice", rooms=("lobby",), ack_timeout=0.1)
    bob = await make_client("bob", rooms=("lobby",))
    seen = Recorder(bob)
    await server.lose_next_acks(3)
    acks = await asyncio.gather(*(alice.send("lobby", f"m{i}") for i in range(5)))
    log = server.room_events("lobby")
    assert [e["text"] for e in log] == [f"m{i}" for i in range(5)]
    assert [a.event_id for a in acks] == [e["eventId"] for e in log]
    assert [a.duplicate for a in acks] == [True, True, True, False, False]
    assert server.counters["acks_lost"] == 3
    assert server.counters["duplicates"] == 3
    await wait_until(lambda: len(seen.messages) == 5)
    assert seen.texts() == [f"m{i}" for i in range(5)]


async def test_sends_made_before_the_first_connection_are_delivered(
    server: FakeServer, make_client: MakeClient
) -> None:
    await server.reject_handshakes(3, 503)
    alice = await make_client("alice", connect=False)
    await alice.connect(wait=False)
    join = asyncio.create_task(alice.join("lobby"))
    await wait_until(lambda: alice.rooms == ["lobby"])  # join() registered the room
    message_id = alice.send_nowait("lobby", "queued before connecting")
    ack = await alice.send("lobby", "second")
    assert await join == ["alice"]
    assert server.room_events("lobby")[0]["messageId"] == message_id
    assert ack.event_id == 2
    assert alice.stats()["attempts"] == 4


async def test_outbox_full_and_ttl(server: FakeServer, make_client: MakeClient) -> None:
    gate = GatedTransport()
    alice = await make_client("alice", rooms=("lobby",), gate=gate, outbox_limit=3)
    gate.cut()
    await alice.wait_for(ConnectionState.RECONNECTING)
    expiring = asyncio.create_task(alice.send("lobby", "short-lived", ttl=0.05))
    await wait_until(lambda: alice.stats()["queued"] == 1)  # send() queued it
    kept = [alice.send_nowait("lobby", f"k{i}") for i in range(2)]
    with pytest.raises(OutboxFull):
        alice.send_nowait("lobby", "one too many")
    with pytest.raises(MessageExpired) as info:
        await expiring
    assert not info.value.maybe_delivered
    with pytest.raises(AckTimeout):
        await alice.send("lobby", "waits", timeout=0.05)
    gate.restore()
    await alice.wait_for(ConnectionState.CONNECTED)
    await wait_until(lambda: len(server.room_events("lobby")) == 3)
    assert [e["messageId"] for e in server.room_events("lobby")][:2] == kept
    assert [e["text"] for e in server.room_events("lobby")] == ["k0", "k1", "waits"]


async def test_drop_oldest_reports_every_dropped_message(
    server: FakeServer, make_client: MakeClient
) -> None:
    gate = GatedTransport()
    alice = await make_client(
        "alice", rooms=("lobby",), gate=gate, outbox_limit=2, overflow="drop_oldest"
    )
    seen = Recorder(alice)
    gate.cut()
    await alice.wait_for(ConnectionState.RECONNECTING)
    first = alice.send_nowait("lobby", "dropped")
    alice.send_nowait("lobby", "kept-1")
    alice.send_nowait("lobby", "kept-2")
    await wait_until(lambda: any(e.code == "MESSAGE_DROPPED" for e in seen.errors))
    assert first in next(e.message for e in seen.errors if e.code == "MESSAGE_DROPPED")
    gate.restore()
    await wait_until(lambda: len(server.room_events("lobby")) == 2)
    assert [e["text"] for e in server.room_events("lobby")] == ["kept-1", "kept-2"]
    assert alice.stats()["dropped"] == 1


async def test_error_replies_and_local_misuse(server: FakeServer, make_client: MakeClient) -> None:
    alice = await make_client("alice", rooms=("lobby",))
    with pytest.raises(NotJoined):
        await alice.send("elsewhere", "x")
    with pytest.raises(RequestRejected) as info:
        await alice.send("lobby", "x" * 9000)  # over the server's maxTextLength
    assert info.value.code == "BAD_REQUEST"
    assert (await alice.send("lobby", "still fine")).event_id == 1


async def test_close_flushes_or_fails_pending_sends(
    server: FakeServer, make_client: MakeClient
) -> None:
    alice = await make_client("alice", rooms=("lobby",))
    pending = [asyncio.create_task(alice.send("lobby", f"m{i}")) for i in range(20)]
    await wait_until(lambda: alice.stats()["queued"] + alice.stats()["acked"] == 20)
    await alice.close()  # flush=True: waits for the acks
    assert all(t.done() and not t.exception() for t in pending)
    assert len(server.room_events("lobby")) == 20

    gate = GatedTransport()
    bob = await make_client("bob", rooms=("lobby",), gate=gate)
    gate.cut()
    await bob.wait_for(ConnectionState.RECONNECTING)
    stuck = asyncio.create_task(bob.send("lobby", "never"))
    await wait_until(lambda: bob.stats()["queued"] == 1)
    await bob.close(flush=False)
    with pytest.raises(ClientClosed):
        await stuck
    assert bob.state is ConnectionState.CLOSED
    with pytest.raises(ClientClosed):
        bob.send_nowait("lobby", "after close")


async def test_leave_stops_rejoining(server: FakeServer, make_client: MakeClient) -> None:
    alice = await make_client("alice", rooms=("a", "b"))
    assert alice.rooms == ["a", "b"]
    await alice.leave("a")
    assert alice.rooms == ["b"] and server.members("a") == []
    await server.drop_connections()
    await wait_until(lambda: server.members("b") == ["alice"])
    assert server.members("a") == []
    assert await alice.members("b") == ["alice"]


async def test_events_iterator_sees_everything_in_order(
    server: FakeServer, make_client: MakeClient
) -> None:
    alice = await make_client("alice", rooms=("lobby",))
    bob = await make_client("bob", connect=False, backoff=Backoff(base=0.01, cap=0.05))
    received: list[str] = []

    async def consume() -> None:
        async for event in bob.events(everything=True):
            received.append(getattr(event, "name", type(event).__name__))

    consumer = asyncio.create_task(consume())
    await wait_until(lambda: bob._dispatcher.streams == 1)  # subscribed before connecting
    await bob.connect()
    await bob.join("lobby")
    await alice.send("lobby", "hi")
    await wait_until(lambda: "chat:message" in received)
    await bob.close()
    await asyncio.wait_for(consumer, 5)  # the iterator ends when the client closes
    assert received[0] == "StateChanged" and received[-1] == "StateChanged"
    assert received.count("chat:message") == 1
