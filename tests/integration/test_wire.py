"""On the wire: codecs negotiated by subprotocol, compression, size bounds."""

from __future__ import annotations

import asyncio
import json
from typing import Literal

import pytest
import websockets

from fake_server import FakeServer
from rtclient import Backoff, Client, ConnectionState
from rtclient.testing import wait_until

from .conftest import MakeClient, Recorder


async def test_msgpack_and_json_clients_share_a_room(
    server: FakeServer, make_client: MakeClient
) -> None:
    packed = await make_client("packed", rooms=("mixed",), codec="msgpack")
    plain = await make_client("plain", rooms=("mixed",))
    assert packed._conn is not None and packed._conn.codec.name == "msgpack"  # type: ignore[attr-defined]
    assert plain._conn is not None and plain._conn.codec.name == "json"  # type: ignore[attr-defined]
    seen_packed, seen_plain = Recorder(packed), Recorder(plain)
    await packed.send("mixed", "from msgpack ✓")
    await plain.send("mixed", "from json")
    await wait_until(lambda: len(seen_packed.messages) == 2 and len(seen_plain.messages) == 2)
    assert seen_packed.texts() == seen_plain.texts() == ["from msgpack ✓", "from json"]


async def test_msgpack_survives_a_restart_with_sync(
    server: FakeServer, make_client: MakeClient
) -> None:
    alice = await make_client("alice", rooms=("r",), codec="msgpack")
    bob = await make_client("bob", rooms=("r",), codec="msgpack")
    seen = Recorder(bob)
    await server.restart(downtime=0.05)
    acks = await asyncio.gather(*(alice.send("r", f"m{i}") for i in range(20)))
    await wait_until(lambda: len(seen.messages) == 20)
    assert [m.event_id for m in seen.messages] == [a.event_id for a in acks]


async def test_compression_is_negotiated_and_can_be_turned_off(
    server: FakeServer, make_client: MakeClient
) -> None:
    on = await make_client("on", rooms=("z",))
    off = await make_client("off", rooms=("z",), compression=False)
    ws_on = on._conn._ws  # type: ignore[union-attr]
    ws_off = off._conn._ws  # type: ignore[union-attr]
    assert [e.name for e in ws_on.protocol.extensions] == ["permessage-deflate"]
    assert ws_off.protocol.extensions == []
    seen = Recorder(off)
    await on.send("z", "x" * 5000)  # compressible, above the threshold
    await wait_until(lambda: len(seen.messages) == 1)
    assert seen.messages[0].text == "x" * 5000


async def test_server_bounds_the_decompressed_size(server: FakeServer) -> None:
    """A compressed frame that inflates past max_message_size closes with 1009."""
    token = server.issue_token("bomber")
    async with websockets.connect(
        server.ws_url, additional_headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        assert ws.protocol.extensions  # deflate negotiated
        await ws.recv()  # connected
        bomb = json.dumps({"type": "ping", "payload": {"pad": "0" * 2_000_000}})
        await ws.send(bomb)  # ~2 MB of zeros: a few KB on the wire
        with pytest.raises(websockets.ConnectionClosed) as info:
            while True:
                await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009


@pytest.mark.parametrize("transport", ["websocket", "aiohttp"])
async def test_client_bounds_the_decompressed_size_and_keeps_going(
    bomb_server: str, transport: Literal["websocket", "aiohttp"]
) -> None:
    client = Client(
        bomb_server, token="t", transport=transport, backoff=Backoff(base=0.01, cap=0.05)
    )
    seen: list[ConnectionState] = []
    client.on("state", lambda change: seen.append(change.new))
    await client.connect()
    await wait_until(lambda: seen.count(ConnectionState.RECONNECTING) >= 2)
    assert client.state is not ConnectionState.CLOSED  # a retryable close (1009), no crash
    await client.close()


async def test_socketio_msgpack_serializer() -> None:
    async with FakeServer(socketio_serializer="msgpack") as srv:
        client = Client(
            srv.sio_url,
            transport="socketio",
            codec="msgpack",
            token=srv.issue_token("alice"),
            backoff=Backoff(base=0.01, cap=0.1),
        )
        async with client:
            await client.join("packed")
            ack = await client.send("packed", "over msgpack packets")
            assert ack.event_id == 1
        assert srv.room_events("packed")[0]["text"] == "over msgpack packets"


async def test_batched_sends_are_acked_one_by_one(
    server: FakeServer, make_client: MakeClient
) -> None:
    alice = await make_client("alice", rooms=("b",), batch_max=16, batch_wait=0.005)
    bob = await make_client("bob", rooms=("b",))
    seen = Recorder(bob)
    acks = await asyncio.gather(*(alice.send("b", f"m{i}") for i in range(100)))
    assert [a.event_id for a in acks] == list(range(1, 101))
    assert alice.stats()["batches"] >= 100 // 16
    assert server.counters["batches"] == alice.stats()["batches"]
    await wait_until(lambda: len(seen.messages) == 100)
    assert seen.texts() == [f"m{i}" for i in range(100)]


async def test_a_bad_item_in_a_batch_does_not_stop_the_others(server: FakeServer) -> None:
    token = server.issue_token("raw")
    async with websockets.connect(
        server.ws_url, additional_headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        await ws.recv()  # connected
        items = [
            {"type": "room:join", "id": "j", "payload": {"roomId": "b"}},
            {"type": "chat:send", "id": "bad", "payload": {"roomId": "b", "text": 5}},
            {"type": "chat:send", "id": "good", "payload": {"roomId": "b", "text": "ok"}},
            {"type": "batch", "id": "nested", "payload": {"items": []}},
        ]
        await ws.send(json.dumps({"type": "batch", "payload": {"items": items}}))
        acks = {}
        while len(acks) < 4:
            frame = json.loads(await ws.recv())
            if frame["type"] == "ack":
                acks[frame["id"]] = frame["payload"]["success"]
        assert acks == {"j": True, "bad": False, "good": True, "nested": False}
    assert [e["text"] for e in server.room_events("b")] == ["ok"]
