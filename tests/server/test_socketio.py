"""The Socket.IO binding, driven by python-socketio's own AsyncClient.

Auth and connect_error messages, the welcome, every request event with its ack, and
one hub shared with raw WebSocket users (rooms, presence, one log, one dedupe table).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
import socketio

from fake_server import FakeServer

from .conftest import Connect, MakeServer
from .helpers import WAIT
from .sio_helpers import OpenSio, SioUser, sio_users


@pytest.fixture
async def sio() -> AsyncIterator[OpenSio]:
    async with sio_users() as open_user:
        yield open_user


# -- auth -----------------------------------------------------------------------------------


async def test_auth_payload_gets_the_raw_welcome(
    server: FakeServer, sio: OpenSio, connect: Connect
) -> None:
    alice = await sio(server, "alice")
    raw = await connect(server, "bob")
    assert alice.welcome.keys() == raw.welcome.keys()
    assert alice.welcome["userId"] == "alice" and alice.welcome["epoch"] == server.epoch
    assert alice.welcome["clientId"] != raw.welcome["clientId"]
    assert server.connection_count() == 2
    assert server.health()["connections"] == 2


async def test_bearer_header_is_accepted(server: FakeServer) -> None:
    user = SioUser()
    token = server.issue_token("alice")
    await user.connect(server.sio_url, headers={"Authorization": f"Bearer {token}"})
    assert (await user.expect("connected"))["userId"] == "alice"
    await user.close()


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (None, "AUTHENTICATION_REQUIRED"),
        ("garbage", "INVALID_TOKEN"),
        ("expired", "TOKEN_EXPIRED"),
        ("disabled", "USER_DISABLED"),
    ],
)
async def test_refusals_are_connect_errors(
    server: FakeServer, token: str | None, message: str
) -> None:
    if token == "expired":
        token = server.issue_token("alice", ttl=-10)
    elif token == "disabled":
        await server.disable_user("mallory")
        token = server.issue_token("mallory")
    user = SioUser()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await user.connect(server.sio_url, auth=None if token is None else {"token": token})
    assert user.connect_error == {"message": message}
    assert server.connection_count() == 0
    assert server.counters["auth_failures"] == 1


async def test_tokens_are_never_logged(
    server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good, bad = server.issue_token("alice"), server.issue_token("alice") + "x"
    user = SioUser()
    await user.connect(server.sio_url, auth={"token": good})
    await user.expect("connected")
    assert (await user.call("token:refresh", bad))["error"]["code"] == "INVALID_TOKEN"
    await user.close()
    refused = SioUser()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await refused.connect(server.sio_url, auth={"token": bad})
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "connected client=" in text
    assert good not in text and bad not in text and good.split(".")[1] not in text


# -- one hub for both transports ------------------------------------------------------------


async def test_raw_and_socketio_users_share_rooms_log_and_dedupe(
    server: FakeServer, sio: OpenSio, connect: Connect
) -> None:
    raw_alice = await connect(server, "alice")
    await raw_alice.join("lobby")
    bob = await sio(server, "bob")
    joined = await bob.ok("room:join", "lobby")  # the seed's bare room id
    assert joined["members"] == ["alice", "bob"] and joined["lastEventId"] == 0
    assert (await raw_alice.expect("user:joined"))["userId"] == "bob"

    first = await raw_alice.say("lobby", "from raw", id="k1")
    seen = await bob.expect("chat:message")
    assert (seen["text"], seen["from"], seen["eventId"]) == ("from raw", "alice", 1)

    second = await bob.say("lobby", "from sio", message_id="b1")
    assert second["eventId"] == 2 and second["duplicate"] is False
    assert (await raw_alice.expect("chat:message"))["messageId"] == "k1"  # her echo
    assert (await raw_alice.expect("chat:message"))["messageId"] == "b1"
    assert (await bob.expect("chat:message"))["messageId"] == "b1"  # the sender's echo
    assert [e["eventId"] for e in server.room_events("lobby")] == [1, 2]

    # alice over Socket.IO resends the message she sent over raw WebSocket: same table.
    sio_alice = await sio(server, "alice")
    resent = await sio_alice.say("lobby", "from raw", message_id="k1")
    assert resent["duplicate"] is True
    assert (resent["eventId"], resent["timestamp"]) == (first["eventId"], first["timestamp"])
    conflict = {"roomId": "lobby", "text": "other", "messageId": "k1"}
    assert await sio_alice.fails("chat:send", conflict) == "IDEMPOTENCY_CONFLICT"
    await bob.silent("chat:message")
    assert server.counters["messages_committed"] == 2

    await bob.ok("room:leave", {"roomId": "lobby"})
    assert (await raw_alice.expect("user:left"))["userId"] == "bob"
    await bob.join("lobby")
    await raw_alice.expect("user:joined")
    await bob.close()
    assert (await raw_alice.expect("user:left"))["userId"] == "bob"


async def test_members_and_direct_messages(
    server: FakeServer, sio: OpenSio, connect: Connect
) -> None:
    alice, bob = await sio(server, "alice"), await connect(server, "bob")
    await bob.join("lobby")
    assert (await alice.ok("room:members", "lobby"))["members"] == ["bob"]
    ack = await alice.ok("dm:send", {"toUserId": "bob", "text": "psst", "messageId": "d1"})
    assert ack["roomId"] == "user:bob"
    dm = await bob.expect("dm:message")
    assert (dm["from"], dm["to"], dm["text"]) == ("alice", "bob", "psst")
    await bob.ok("dm:send", {"toUserId": "alice", "text": "back"}, id="d2")
    assert (await alice.expect("dm:message"))["text"] == "back"
    assert await alice.fails("room:join", "admin:ops") == "FORBIDDEN"
    assert await alice.fails("chat:send", {"roomId": "x", "text": "t", "messageId": "n"}) == (
        "NOT_IN_ROOM"
    )


async def test_sync_single_room_and_the_seed_multi_room_form(
    server: FakeServer, sio: OpenSio
) -> None:
    alice = await sio(server, "alice")
    for room in ("a", "b"):
        await alice.join(room)
        for i in range(3):
            await alice.say(room, f"{room}{i}")
    page = await alice.ok("sync:messages", {"roomId": "a", "lastEventId": 1, "limit": 1})
    assert [e["text"] for e in page["events"]] == ["a1"] and page["more"] is True
    assert page["epoch"] == server.epoch and page["lastEventId"] == 3

    reply = await alice.ok("sync:messages", {"lastEventId": 2, "rooms": ["a", "b"]})
    assert set(reply["rooms"]) == {"a", "b"}
    assert [e["text"] for e in reply["rooms"]["b"]["events"]] == ["b2"]
    per_room = {"lastEventId": {"a": 0, "b": 3}, "epoch": "old", "rooms": ["a", "b", "admin:x"]}
    reply = await alice.ok("sync:messages", per_room)
    assert reply["rooms"]["a"]["truncated"] is True  # another epoch
    assert len(reply["rooms"]["a"]["events"]) == 3
    assert reply["rooms"]["admin:x"]["error"]["code"] == "FORBIDDEN"
    assert await alice.fails("sync:messages", {"rooms": "a"}) == "BAD_REQUEST"
    assert await alice.fails("sync:messages", {"rooms": []}) == "BAD_REQUEST"


async def test_token_refresh(server: FakeServer, sio: OpenSio) -> None:
    alice = await sio(server, "alice", ttl=600)
    fresh = server.issue_token("alice", ttl=7200)
    ack = await alice.ok("token:refresh", {"token": fresh})
    assert ack["expiresAt"] > alice.welcome["expiresAt"]
    assert (await alice.ok("token:refresh", server.issue_token("alice")))["success"]  # bare
    assert await alice.fails("token:refresh", "junk") == "INVALID_TOKEN"
    assert await alice.fails("token:refresh", server.issue_token("bob")) == "USER_MISMATCH"
    expired = server.issue_token("alice", ttl=-10)
    assert await alice.fails("token:refresh", {"token": expired}) == "TOKEN_EXPIRED"
    assert await alice.fails("token:refresh", {}) == "BAD_REQUEST"


async def test_token_expiry_mid_session(make_server: MakeServer, sio: OpenSio) -> None:
    server = await make_server(token_warning=300.0)
    alice = await sio(server, "alice", ttl=0.4)
    warning = await alice.expect("token:expiring")
    assert warning["expiresAt"] == alice.welcome["expiresAt"]
    error = await alice.expect("error")
    assert error == {
        "code": "TOKEN_EXPIRED",
        "message": "TOKEN_EXPIRED",
        "closeCode": 4002,
        "reason": "TOKEN_EXPIRED",
    }
    assert await alice.disconnected() == "server disconnect"
    assert server.connection_count() == 0


async def test_typing_read_receipts_and_ping(
    server: FakeServer, sio: OpenSio, connect: Connect
) -> None:
    alice, bob = await sio(server, "alice"), await connect(server, "bob")
    await alice.join("lobby")
    await bob.join("lobby")
    await alice.client.emit("typing:start", "lobby")  # fire-and-forget, bare room id
    assert await bob.expect("typing:start") == {"roomId": "lobby", "userId": "alice"}
    assert (await alice.ok("typing:stop", {"roomId": "lobby"}))["roomId"] == "lobby"
    assert await bob.expect("typing:stop") == {"roomId": "lobby", "userId": "alice"}
    await bob.ok("typing:start", {"roomId": "lobby"})
    assert (await alice.expect("typing:start"))["userId"] == "bob"
    await alice.say("lobby", "read me")
    await bob.ok("message:read", {"roomId": "lobby", "eventId": 1})
    receipt = await alice.expect("message:read")
    assert (receipt["userId"], receipt["eventId"]) == ("bob", 1)
    pong_ack = await alice.ok("ping", {"ts": 42})
    assert pong_ack["ts"] == 42 and "serverTime" in pong_ack
    assert (await alice.expect("pong"))["ts"] == 42


# -- bad input --------------------------------------------------------------------------------


async def test_unknown_events_and_bad_data_never_crash(server: FakeServer, sio: OpenSio) -> None:
    alice = await sio(server, "alice")
    await alice.join("lobby")
    assert await alice.fails("no:such", {"x": 1}) == "UNKNOWN_TYPE"
    await alice.client.emit("no:such")
    assert (await alice.expect("error"))["code"] == "UNKNOWN_TYPE"
    assert await alice.fails("room:join", 42) == "BAD_REQUEST"
    assert await alice.fails("room:join", {"roomId": "bad room"}) == "BAD_REQUEST"
    assert await alice.fails("chat:send", {"roomId": "lobby", "text": "no id"}) == "BAD_REQUEST"
    too_long = {"roomId": "lobby", "text": "t", "messageId": "x" * 65}
    assert await alice.fails("chat:send", too_long) == "BAD_REQUEST"
    assert await alice.fails("chat:send", ["not", "an", "object"]) == "BAD_REQUEST"
    assert await alice.fails("message:read", {"roomId": "lobby", "eventId": "1"}) == "BAD_REQUEST"
    two_args = await alice.client.call("room:join", ("lobby", "extra"), timeout=WAIT)
    assert two_args["error"]["code"] == "BAD_REQUEST"
    # Fire-and-forget requests get their errors as `error` events.
    await alice.client.emit("chat:send", {"roomId": "elsewhere", "text": "t", "messageId": "q"})
    error = await alice.expect("error")
    assert (error["code"], error["requestType"]) == ("NOT_IN_ROOM", "chat:send")
    await alice.client.emit("room:join", 42)
    assert (await alice.expect("error"))["code"] == "BAD_REQUEST"
    await alice.client.emit("chat:send", {"roomId": "lobby", "text": "ok", "messageId": "fine"})
    assert (await alice.expect("chat:message"))["messageId"] == "fine"
    await alice.silent("error")
    assert server.counters["bad_requests"] == 10
    assert server.counters["errors"] == 0
    assert (await alice.ok("ping", {"ts": 1}))["ts"] == 1


async def test_long_polling_transport_works_too(
    server: FakeServer, sio: OpenSio, connect: Connect
) -> None:
    alice = await sio(server, "alice", transports=["polling"])
    bob = await connect(server, "bob")
    await alice.join("lobby")
    await bob.join("lobby")
    await bob.say("lobby", "to a poller")
    assert (await alice.expect("chat:message"))["text"] == "to a poller"
    assert (await alice.say("lobby", "from a poller"))["eventId"] == 2
    upgraded = await sio(server, "carol", transports=["polling", "websocket"])
    assert (await upgraded.join("lobby"))["members"] == ["alice", "bob", "carol"]
