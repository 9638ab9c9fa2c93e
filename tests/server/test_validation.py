"""Bad input, limits and errors: the connection survives everything but oversize."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fake_server import FakeServer

from .conftest import Connect, MakeServer
from .helpers import WsClient


async def still_works(client: WsClient) -> None:
    """Prove the connection is alive with a following request."""
    assert (await client.ok("ping", {"ts": 1}))["ts"] == 1


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ("{not json", "frame is not JSON"),
        (b"\x00\x01binary", "binary frames are not accepted; send JSON text"),
        ("[1, 2]", "frame is not a JSON object"),
        ('"text"', "frame is not a JSON object"),
        ('{"payload": {}}', "type must be a non-empty string"),
        ('{"type": 7}', "type must be a non-empty string"),
        ('{"type": "ping", "id": 5}', "id must be a string of 1 to 64 characters"),
        ('{"type": "ping", "id": "' + "x" * 65 + '"}', "id must be a string of 1 to 64 characters"),
        ('{"type": "ping", "payload": [1]}', "payload must be an object"),
    ],
)
async def test_malformed_frames_get_an_error_event(
    server: FakeServer, connect: Connect, frame: str | bytes, message: str
) -> None:
    alice = await connect(server, "alice")
    await alice.send(frame)
    assert await alice.expect("error") == {"code": "BAD_REQUEST", "message": message}
    await still_works(alice)
    assert server.counters["bad_requests"] == 1


async def test_malformed_frame_with_an_id_gets_an_error_ack(
    server: FakeServer, connect: Connect
) -> None:
    alice = await connect(server, "alice")
    await alice.send({"type": "room:join", "id": "q1", "payload": "lobby"})
    ack = await alice.expect_ack("q1")
    assert ack["success"] is False and ack["error"]["code"] == "BAD_REQUEST"


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        ("room:join", {}),
        ("room:join", {"roomId": 5}),
        ("room:join", {"roomId": ""}),
        ("room:join", {"roomId": "has space"}),
        ("room:join", {"roomId": "x" * 65}),
        ("room:leave", {"roomId": None}),
        ("chat:send", {"roomId": "lobby"}),
        ("chat:send", {"roomId": "lobby", "text": ""}),
        ("chat:send", {"roomId": "lobby", "text": 42}),
        ("chat:send", {"roomId": "lobby", "text": "x" * 8001}),
        ("dm:send", {"toUserId": "", "text": "x"}),
        ("dm:send", {"toUserId": ["bob"], "text": "x"}),
        ("sync:messages", {"roomId": "lobby", "lastEventId": "3"}),
        ("sync:messages", {"roomId": "lobby", "lastEventId": -1}),
        ("sync:messages", {"roomId": "lobby", "lastEventId": True}),
        ("sync:messages", {"roomId": "lobby", "lastEventId": 0, "epoch": 1}),
        ("message:read", {"roomId": "lobby"}),
        ("ping", {"ts": [1]}),
        ("token:refresh", {"token": 1}),
        ("auth", {"token": "again"}),
    ],
)
async def test_bad_fields_are_bad_requests(
    server: FakeServer, connect: Connect, kind: str, payload: dict[str, Any]
) -> None:
    alice = await connect(server, "alice")
    await alice.join("lobby")
    assert await alice.fails(kind, payload) == "BAD_REQUEST"
    await still_works(alice)
    assert server.counters["bad_requests"] == 1
    assert server.room_events("lobby") == []


async def test_unknown_type(server: FakeServer, connect: Connect) -> None:
    alice = await connect(server, "alice")
    assert await alice.fails("launch:rocket", {}) == "UNKNOWN_TYPE"
    await alice.send({"type": "launch:rocket"})
    error = await alice.expect("error")
    assert error["code"] == "UNKNOWN_TYPE" and error["requestType"] == "launch:rocket"
    await still_works(alice)


async def test_ping_answers_pong_and_ack(server: FakeServer, connect: Connect) -> None:
    alice = await connect(server, "alice")
    await alice.send({"type": "ping", "payload": {"ts": 123.5}})
    pong = await alice.expect("pong")
    assert pong["ts"] == 123.5 and isinstance(pong["serverTime"], float)
    ack = await alice.ok("ping", {"ts": "t"})
    assert ack["ts"] == "t"
    assert (await alice.expect("pong"))["ts"] == "t"


async def test_rate_limit_with_retry_after(make_server: MakeServer, connect: Connect) -> None:
    # A token every 100 s, longer than the test's timeout (60 s): the four sends below
    # never see one come back, however slow the run (at 1 a second they had to fit in
    # 1 s; at 0.1, in 10 s).
    server = await make_server(rate_per_second=0.01, rate_burst=3)
    alice = await connect(server, "alice")
    await alice.join("lobby")
    for i in range(3):
        await alice.say("lobby", f"m{i}")
    ack = await alice.request("chat:send", {"roomId": "lobby", "text": "too many"})
    assert ack["success"] is False
    error = ack["error"]
    assert error["code"] == "RATE_LIMIT" and 0 < error["retryAfter"] <= 100.0
    assert len(server.room_events("lobby")) == 3
    assert server.counters["rate_limited"] == 1
    # Typing has a bucket of its own (with receipts): a chatty user can still type.
    await alice.ok("typing:start", {"roomId": "lobby"})
    await still_works(alice)  # ping is not rate limited


async def test_oversize_frame_closes_1009(make_server: MakeServer, connect: Connect) -> None:
    server = await make_server(max_message_size=1024)
    alice = await connect(server, "alice")
    big = json.dumps({"type": "ping", "payload": {"ts": "x" * 2000}})
    await alice.send(big)
    code, _ = await alice.closed()
    assert code == 1009
    bob = await connect(server, "bob")  # the server is fine
    await still_works(bob)


async def test_frame_just_under_the_limit_is_fine(
    make_server: MakeServer, connect: Connect
) -> None:
    server = await make_server(max_message_size=1024)
    alice = await connect(server, "alice")
    await alice.send(json.dumps({"type": "ping", "payload": {"ts": "x" * 900}}))
    assert (await alice.expect("pong"))["ts"] == "x" * 900
