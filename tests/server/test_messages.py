"""chat:send idempotency, the event log, sync pages, retention and epochs."""

from __future__ import annotations

from fake_server import FakeServer

from .conftest import Connect, MakeServer
from .helpers import WsClient


async def joined(server: FakeServer, connect: Connect, user: str = "alice") -> WsClient:
    client = await connect(server, user)
    await client.join("lobby")
    return client


async def test_ack_fields_and_increasing_event_ids(server: FakeServer, connect: Connect) -> None:
    alice = await joined(server, connect)
    first = await alice.say("lobby", "one", id="m1")
    assert first["roomId"] == "lobby" and first["messageId"] == "m1"
    assert first["epoch"] == server.epoch and first["duplicate"] is False
    assert isinstance(first["timestamp"], float)
    second = await alice.say("lobby", "two", id="m2")
    assert (first["eventId"], second["eventId"]) == (1, 2)
    assert [e["text"] for e in server.room_events("lobby")] == ["one", "two"]
    assert server.counters["messages_committed"] == 2


async def test_event_ids_are_per_room(server: FakeServer, connect: Connect) -> None:
    alice = await joined(server, connect)
    await alice.join("other")
    await alice.say("lobby", "a")
    assert (await alice.say("other", "b"))["eventId"] == 1
    assert (await alice.join("lobby"))["lastEventId"] == 1


async def test_chat_send_needs_an_id(server: FakeServer, connect: Connect) -> None:
    alice = await joined(server, connect)
    await alice.send({"type": "chat:send", "payload": {"roomId": "lobby", "text": "x"}})
    error = await alice.expect("error")
    assert error["code"] == "BAD_REQUEST"
    assert server.room_events("lobby") == []


async def test_resend_gets_original_event_and_no_second_broadcast(
    server: FakeServer, connect: Connect
) -> None:
    alice, bob = await joined(server, connect), await joined(server, connect, "bob")
    first = await alice.say("lobby", "hello", id="same")
    await bob.expect("chat:message")
    again = await alice.say("lobby", "hello", id="same")
    assert again["eventId"] == first["eventId"] and again["duplicate"] is True
    assert again["timestamp"] == first["timestamp"]
    await bob.silent("chat:message")
    assert len(server.room_events("lobby")) == 1
    assert server.counters["duplicates"] == 1


async def test_message_ids_are_per_user(server: FakeServer, connect: Connect) -> None:
    alice, bob = await joined(server, connect), await joined(server, connect, "bob")
    await alice.say("lobby", "hello", id="same")
    assert (await bob.say("lobby", "hello", id="same"))["duplicate"] is False


async def test_reused_id_for_other_content_is_a_conflict(
    server: FakeServer, connect: Connect
) -> None:
    alice = await joined(server, connect)
    await alice.join("other")
    await alice.say("lobby", "hello", id="k")
    other_text = {"roomId": "lobby", "text": "changed"}
    assert await alice.fails("chat:send", other_text, id="k") == "IDEMPOTENCY_CONFLICT"
    other_room = {"roomId": "other", "text": "hello"}
    assert await alice.fails("chat:send", other_room, id="k") == "IDEMPOTENCY_CONFLICT"
    assert len(server.room_events("lobby")) == 1 and server.room_events("other") == []


async def test_resend_after_reconnect_before_rejoin(server: FakeServer, connect: Connect) -> None:
    alice = await joined(server, connect)
    first = await alice.say("lobby", "hello", id="k")
    await alice.ws.close()
    again = await connect(server, "alice")
    ack = await again.say("lobby", "hello", id="k")
    assert ack["duplicate"] is True and ack["eventId"] == first["eventId"]


async def test_sync_pages(server: FakeServer, connect: Connect) -> None:
    alice = await joined(server, connect)
    for i in range(5):
        await alice.say("lobby", f"m{i}")
    ask = {"roomId": "lobby", "epoch": server.epoch, "limit": 2}
    page = await alice.ok("sync:messages", {**ask, "lastEventId": 0})
    assert [e["eventId"] for e in page["events"]] == [1, 2]
    assert page["more"] is True and page["truncated"] is False
    assert page["lastEventId"] == 5 and page["epoch"] == server.epoch
    assert page["events"][0] == server.room_events("lobby")[0]
    page = await alice.ok("sync:messages", {**ask, "lastEventId": 2})
    assert [e["eventId"] for e in page["events"]] == [3, 4] and page["more"] is True
    page = await alice.ok("sync:messages", {**ask, "lastEventId": 4})
    assert [e["eventId"] for e in page["events"]] == [5] and page["more"] is False
    page = await alice.ok("sync:messages", {**ask, "lastEventId": 5})
    assert page["events"] == [] and page["more"] is False and page["truncated"] is False
    assert server.counters["syncs"] == 4


async def test_sync_limit_defaults_and_is_capped(make_server: MakeServer, connect: Connect) -> None:
    server = await make_server(sync_page_default=2, sync_page_max=3)
    alice = await joined(server, connect)
    for i in range(5):
        await alice.say("lobby", f"m{i}")
    page = await alice.ok("sync:messages", {"roomId": "lobby", "lastEventId": 0})
    assert len(page["events"]) == 2
    page = await alice.ok("sync:messages", {"roomId": "lobby", "lastEventId": 0, "limit": 99})
    assert len(page["events"]) == 3
    bad = {"roomId": "lobby", "lastEventId": 0, "limit": 0}
    assert await alice.fails("sync:messages", bad) == "BAD_REQUEST"


async def test_sync_needs_no_membership(server: FakeServer, connect: Connect) -> None:
    alice = await joined(server, connect)
    await alice.say("lobby", "hi")
    bob = await connect(server, "bob")
    page = await bob.ok("sync:messages", {"roomId": "lobby", "lastEventId": 0})
    assert [e["text"] for e in page["events"]] == ["hi"]


async def test_retention_by_count_truncates_sync(make_server: MakeServer, connect: Connect) -> None:
    server = await make_server(retention_count=3)
    alice = await joined(server, connect)
    for i in range(5):
        await alice.say("lobby", f"m{i}")
    assert [e["eventId"] for e in server.room_events("lobby")] == [3, 4, 5]
    page = await alice.ok("sync:messages", {"roomId": "lobby", "lastEventId": 1})
    assert page["truncated"] is True
    assert [e["eventId"] for e in page["events"]] == [3, 4, 5]
    page = await alice.ok("sync:messages", {"roomId": "lobby", "lastEventId": 2})
    assert page["truncated"] is False
    assert [e["eventId"] for e in page["events"]] == [3, 4, 5]


async def test_sync_with_an_old_epoch_is_truncated(server: FakeServer, connect: Connect) -> None:
    alice = await joined(server, connect)
    await alice.say("lobby", "before")
    old_epoch = server.epoch
    await server.restart(keep_log=False)
    assert server.epoch != old_epoch
    alice = await joined(server, connect)
    ack = await alice.say("lobby", "after")
    assert ack["eventId"] == 1 and ack["epoch"] == server.epoch
    ask = {"roomId": "lobby", "lastEventId": 1, "epoch": old_epoch}
    page = await alice.ok("sync:messages", ask)
    assert page["truncated"] is True and page["epoch"] == server.epoch
    assert [e["text"] for e in page["events"]] == ["after"]
