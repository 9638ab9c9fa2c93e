"""Rooms, presence, broadcast, typing, read receipts, direct messages, authorisation."""

from __future__ import annotations

from fake_server import FakeServer

from .conftest import Connect, MakeServer


async def test_join_ack_and_presence(server: FakeServer, connect: Connect) -> None:
    alice = await connect(server, "alice")
    ack = await alice.join("lobby")
    assert ack == {
        "success": True,
        "roomId": "lobby",
        "members": ["alice"],
        "epoch": server.epoch,
        "lastEventId": 0,
    }
    bob = await connect(server, "bob")
    assert (await bob.join("lobby"))["members"] == ["alice", "bob"]
    joined = await alice.expect("user:joined")
    assert joined["roomId"] == "lobby" and joined["userId"] == "bob"
    assert isinstance(joined["timestamp"], float)
    await bob.silent("user:joined")  # nobody tells bob about himself
    assert (await alice.ok("room:members", {"roomId": "lobby"}))["members"] == ["alice", "bob"]
    assert server.members("lobby") == ["alice", "bob"]


async def test_join_twice_is_harmless(server: FakeServer, connect: Connect) -> None:
    alice, bob = await connect(server, "alice"), await connect(server, "bob")
    await alice.join("lobby")
    await bob.join("lobby")
    await alice.expect("user:joined")
    await bob.join("lobby")
    await alice.silent("user:joined")


async def test_presence_is_per_user_across_connections(
    server: FakeServer, connect: Connect
) -> None:
    bob = await connect(server, "bob")
    await bob.join("lobby")
    alice1, alice2 = await connect(server, "alice"), await connect(server, "alice")
    await alice1.join("lobby")
    await bob.expect("user:joined", lambda f: f["payload"]["userId"] == "alice")
    await alice2.join("lobby")
    await bob.silent("user:joined")
    await alice1.ok("room:leave", {"roomId": "lobby"})
    await bob.silent("user:left")
    assert server.members("lobby") == ["alice", "bob"]
    await alice2.ws.close()  # the user's last connection goes: user:left
    left = await bob.expect("user:left")
    assert left["userId"] == "alice" and left["roomId"] == "lobby"
    assert server.members("lobby") == ["bob"]


async def test_leave_sends_user_left(server: FakeServer, connect: Connect) -> None:
    alice, bob = await connect(server, "alice"), await connect(server, "bob")
    await alice.join("lobby")
    await bob.join("lobby")
    assert await bob.ok("room:leave", {"roomId": "lobby"}) == {"success": True, "roomId": "lobby"}
    assert (await alice.expect("user:left"))["userId"] == "bob"


async def test_broadcast_reaches_every_member_sender_included(
    server: FakeServer, connect: Connect
) -> None:
    alice, bob, carol = [await connect(server, u) for u in ("alice", "bob", "carol")]
    await alice.join("lobby")
    await bob.join("lobby")
    ack = await alice.say("lobby", "hello", id="m-1")
    for client in (alice, bob):
        msg = await client.expect("chat:message")
        assert msg["roomId"] == "lobby" and msg["eventId"] == ack["eventId"] == 1
        assert msg["from"] == "alice" and msg["text"] == "hello" and msg["messageId"] == "m-1"
        assert msg["epoch"] == server.epoch
    await carol.silent("chat:message")


async def test_send_requires_membership(server: FakeServer, connect: Connect) -> None:
    alice = await connect(server, "alice")
    assert await alice.fails("chat:send", {"roomId": "lobby", "text": "x"}) == "NOT_IN_ROOM"
    await alice.join("lobby")
    await alice.ok("room:leave", {"roomId": "lobby"})
    assert await alice.fails("chat:send", {"roomId": "lobby", "text": "x"}) == "NOT_IN_ROOM"


async def test_typing_start_stop(server: FakeServer, connect: Connect) -> None:
    alice, bob = await connect(server, "alice"), await connect(server, "bob")
    await alice.join("lobby")
    await bob.join("lobby")
    await alice.send({"type": "typing:start", "payload": {"roomId": "lobby"}})
    assert await bob.expect("typing:start") == {"roomId": "lobby", "userId": "alice"}
    await alice.send({"type": "typing:stop", "payload": {"roomId": "lobby"}})
    assert await bob.expect("typing:stop") == {"roomId": "lobby", "userId": "alice"}
    await alice.silent("typing:start")
    await alice.silent("typing:stop")


async def test_typing_stops_by_itself(make_server: MakeServer, connect: Connect) -> None:
    server = await make_server(typing_timeout=0.1)
    alice, bob = await connect(server, "alice"), await connect(server, "bob")
    await alice.join("lobby")
    await bob.join("lobby")
    await alice.ok("typing:start", {"roomId": "lobby"})
    await bob.expect("typing:start")
    assert await bob.expect("typing:stop") == {"roomId": "lobby", "userId": "alice"}


async def test_typing_requires_membership(server: FakeServer, connect: Connect) -> None:
    alice = await connect(server, "alice")
    assert await alice.fails("typing:start", {"roomId": "lobby"}) == "NOT_IN_ROOM"


async def test_read_receipts(server: FakeServer, connect: Connect) -> None:
    alice, bob = await connect(server, "alice"), await connect(server, "bob")
    await alice.join("lobby")
    await bob.join("lobby")
    await alice.say("lobby", "hi")
    await bob.ok("message:read", {"roomId": "lobby", "eventId": 1})
    receipt = await alice.expect("message:read")
    assert receipt["roomId"] == "lobby" and receipt["eventId"] == 1
    assert receipt["userId"] == "bob" and isinstance(receipt["timestamp"], float)
    await bob.silent("message:read")
    assert await bob.fails("message:read", {"roomId": "lobby", "eventId": "1"}) == "BAD_REQUEST"


async def test_direct_messages_reach_every_recipient_connection(
    server: FakeServer, connect: Connect
) -> None:
    alice = await connect(server, "alice")
    bob1, bob2 = await connect(server, "bob"), await connect(server, "bob")
    ack = await alice.ok("dm:send", {"toUserId": "bob", "text": "psst"}, id="dm-1")
    assert ack["roomId"] == "user:bob" and ack["eventId"] == 1 and ack["duplicate"] is False
    for bob in (bob1, bob2):
        dm = await bob.expect("dm:message")
        assert dm["from"] == "alice" and dm["to"] == "bob" and dm["text"] == "psst"
        assert dm["roomId"] == "user:bob" and dm["eventId"] == 1 and dm["messageId"] == "dm-1"
    await alice.silent("dm:message")
    page = await bob1.ok("sync:messages", {"roomId": "user:bob", "lastEventId": 0})
    assert [e["text"] for e in page["events"]] == ["psst"]
    assert server.room_events("user:bob")[0]["to"] == "bob"


async def test_room_authorisation(server: FakeServer, connect: Connect) -> None:
    alice = await connect(server, "alice")
    admin = await connect(server, "root", roles=("admin",))
    assert await alice.fails("room:join", {"roomId": "admin:ops"}) == "FORBIDDEN"
    assert await alice.fails("room:join", {"roomId": "user:bob"}) == "FORBIDDEN"
    forbidden_sync = {"roomId": "user:bob", "lastEventId": 0}
    assert await alice.fails("sync:messages", forbidden_sync) == "FORBIDDEN"
    assert await alice.fails("room:members", {"roomId": "admin:ops"}) == "FORBIDDEN"
    assert (await admin.join("admin:ops"))["members"] == ["root"]
    assert (await alice.join("user:alice"))["members"] == ["alice"]
    assert server.members("admin:ops") == ["root"]


async def test_inbox_membership_is_implicit(server: FakeServer, connect: Connect) -> None:
    alice = await connect(server, "alice")
    assert server.members("user:alice") == ["alice"]
    await alice.ok("room:leave", {"roomId": "user:alice"})
    assert server.members("user:alice") == ["alice"]


async def test_typing_goes_to_other_users_only(server: FakeServer, connect: Connect) -> None:
    alice1, alice2, bob = [await connect(server, u) for u in ("alice", "alice", "bob")]
    for client in (alice1, alice2, bob):
        await client.join("lobby")
    await alice1.ok("typing:start", {"roomId": "lobby"})
    await bob.expect("typing:start")
    await alice2.silent("typing:start")


async def test_typing_stops_when_the_typist_leaves(server: FakeServer, connect: Connect) -> None:
    alice, bob = await connect(server, "alice"), await connect(server, "bob")
    await alice.join("lobby")
    await bob.join("lobby")
    await alice.ok("typing:start", {"roomId": "lobby"})
    await bob.expect("typing:start")
    await alice.ws.close()
    assert await bob.expect("typing:stop") == {"roomId": "lobby", "userId": "alice"}
    await bob.expect("user:left")


async def test_read_receipt_reaches_the_readers_other_devices(
    server: FakeServer, connect: Connect
) -> None:
    alice1, alice2 = await connect(server, "alice"), await connect(server, "alice")
    await alice1.join("lobby")
    await alice2.join("lobby")
    await alice1.ok("message:read", {"roomId": "lobby", "eventId": 3})
    assert (await alice2.expect("message:read"))["userId"] == "alice"
