"""Nodes on one Redis share each room's log, dedupe, presence and fan-out."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from rtclient.testing.redis_server import RedisServer

from ..server.conftest import Connect
from .conftest import MakeNode

pytestmark = pytest.mark.cluster


async def test_a_message_sent_to_one_node_reaches_a_member_on_another(
    make_node: MakeNode, connect: Connect
) -> None:
    one, two = await make_node(), await make_node()
    assert one.epoch == two.epoch and one.node_id != two.node_id
    alice = await connect(one, "alice")
    bob = await connect(two, "bob")
    await alice.join("lobby")
    await bob.join("lobby")
    acks = [await alice.say("lobby", f"m{i}") for i in range(5)]
    assert [a["eventId"] for a in acks] == [1, 2, 3, 4, 5]
    got = [await bob.expect("chat:message") for _ in range(5)]
    assert [(e["eventId"], e["text"]) for e in got] == [(i + 1, f"m{i}") for i in range(5)]
    page = await bob.ok("sync:messages", {"roomId": "lobby", "lastEventId": 2})
    assert [e["eventId"] for e in page["events"]] == [3, 4, 5]
    assert page["epoch"] == one.epoch and not page["truncated"] and not page["more"]


async def test_a_message_resent_to_another_node_is_a_duplicate_with_the_original_ack(
    make_node: MakeNode, connect: Connect
) -> None:
    one, two = await make_node(), await make_node()
    alice1, bob = await connect(one, "alice"), await connect(two, "bob")
    await alice1.join("lobby")
    await bob.join("lobby")
    first = await alice1.say("lobby", "hello", id="msg-1")
    # Failover: alice's resend lands on node two before she rejoined there.
    alice2 = await connect(two, "alice")
    again = await alice2.say("lobby", "hello", id="msg-1")
    assert again["duplicate"] is True and first["duplicate"] is False
    assert (again["eventId"], again["epoch"]) == (first["eventId"], first["epoch"])
    assert await alice2.fails("chat:send", {"roomId": "lobby", "text": "other"}, id="msg-1") == (
        "IDEMPOTENCY_CONFLICT"
    )
    assert [e["messageId"] for e in await two.read_log("lobby")] == ["msg-1"]
    await bob.expect("chat:message")
    await bob.silent("chat:message")


async def test_the_same_message_on_two_nodes_at_once_is_committed_once(
    make_node: MakeNode, connect: Connect
) -> None:
    one, two = await make_node(), await make_node()
    on_one, on_two = await connect(one, "alice"), await connect(two, "alice")
    await on_one.join("lobby")
    await on_two.join("lobby")
    for n in range(20):
        frame = {"type": "chat:send", "id": f"m{n}", "payload": {"roomId": "lobby", "text": "x"}}
        await asyncio.gather(on_one.send(frame), on_two.send(frame))
    acks = [
        await asyncio.gather(on_one.expect_ack(f"m{n}"), on_two.expect_ack(f"m{n}"))
        for n in range(20)
    ]
    for n, (a, b) in enumerate(acks):
        assert a["eventId"] == b["eventId"] == n + 1, (a, b)
        assert sorted([a["duplicate"], b["duplicate"]]) == [False, True]
    assert [e["messageId"] for e in await one.read_log("lobby")] == [f"m{n}" for n in range(20)]


async def test_concurrent_senders_on_three_nodes_get_contiguous_ids_seen_in_one_order(
    make_node: MakeNode, connect: Connect
) -> None:
    nodes = [await make_node() for _ in range(3)]
    senders = [await connect(node, f"s{i}") for i, node in enumerate(nodes)]
    watchers = [await connect(node, f"w{i}") for i, node in enumerate(nodes)]
    for client in (*senders, *watchers):
        await client.join("lobby")
    per_sender = 30

    async def send_all(i: int) -> list[int]:
        client = senders[i]
        for n in range(per_sender):
            await client.send(
                {"type": "chat:send", "id": f"{i}-{n}", "payload": {"roomId": "lobby", "text": "t"}}
            )
        return [(await client.expect_ack(f"{i}-{n}"))["eventId"] for n in range(per_sender)]

    ids = await asyncio.gather(*(send_all(i) for i in range(3)))
    every = sorted(i for chunk in ids for i in chunk)
    assert every == list(range(1, 3 * per_sender + 1))
    for chunk in ids:  # each sender's messages in the order it sent them
        assert chunk == sorted(chunk)
    seen = []
    for watcher in watchers:
        got = [await watcher.expect("chat:message") for _ in range(3 * per_sender)]
        seen.append([(e["eventId"], e["messageId"]) for e in got])
    assert seen[0] == seen[1] == seen[2]
    assert [event_id for event_id, _ in seen[0]] == every


async def test_presence_spans_the_nodes(make_node: MakeNode, connect: Connect) -> None:
    one, two = await make_node(), await make_node()
    alice, bob = await connect(one, "alice"), await connect(two, "bob")
    await alice.join("lobby")
    joined = await bob.join("lobby")
    assert joined["members"] == ["alice", "bob"]
    assert (await alice.expect("user:joined"))["userId"] == "bob"
    assert (await alice.ok("room:members", {"roomId": "lobby"}))["members"] == ["alice", "bob"]
    # A second connection of bob's on node one: no second user:joined, no user:left
    # while one of them stays.
    bob_again = await connect(one, "bob")
    await bob_again.join("lobby")
    await bob.ok("room:leave", {"roomId": "lobby"})
    await alice.silent("user:left")
    await bob_again.ok("room:leave", {"roomId": "lobby"})
    assert (await alice.expect("user:left"))["userId"] == "bob"
    assert (await alice.ok("room:members", {"roomId": "lobby"}))["members"] == ["alice"]
    await bob.join("lobby")
    await bob.ok("typing:start", {"roomId": "lobby"})
    assert (await alice.expect("typing:start"))["userId"] == "bob"
    await alice.ok("message:read", {"roomId": "lobby", "eventId": 1})
    assert (await bob.expect("message:read"))["userId"] == "alice"
    await bob.ws.close()
    assert (await alice.expect("typing:stop"))["userId"] == "bob"
    assert (await alice.expect("user:left"))["userId"] == "bob"


async def test_a_direct_message_reaches_its_user_on_another_node(
    make_node: MakeNode, connect: Connect
) -> None:
    one, two = await make_node(), await make_node()
    alice, bob = await connect(one, "alice"), await connect(two, "bob")
    ack = await alice.ok("dm:send", {"toUserId": "bob", "text": "psst"}, id="dm-1")
    got = await bob.expect("dm:message")
    assert (got["from"], got["to"], got["eventId"]) == ("alice", "bob", ack["eventId"])


async def test_the_rate_limit_is_per_user_across_nodes(
    make_node: MakeNode, connect: Connect
) -> None:
    # A token every 100 s, longer than the test's timeout (60 s): the five sends below
    # never see one come back, however slow the run (at 0.5 a second they had to fit
    # in 2 s; at 0.05, in 20 s).
    one = await make_node(rate_per_second=0.01, rate_burst=4)
    two = await make_node(rate_per_second=0.01, rate_burst=4)
    on_one, on_two = await connect(one, "alice"), await connect(two, "alice")
    await on_one.join("lobby")
    await on_two.join("lobby")
    for n in range(2):
        await on_one.say("lobby", "x", id=f"a{n}")
        await on_two.say("lobby", "x", id=f"b{n}")
    ack = await on_two.request("chat:send", {"roomId": "lobby", "text": "x"}, id="over")
    assert ack["success"] is False and ack["error"]["code"] == "RATE_LIMIT"
    assert 0 < ack["error"]["retryAfter"] <= 100.0
    assert two.counters["rate_limited"] == 1
    # Another user has a bucket of its own.
    bob = await connect(one, "bob")
    await bob.join("lobby")
    await bob.say("lobby", "fine")


async def test_an_event_published_again_is_not_delivered_twice(
    make_node: MakeNode, connect: Connect, redis: RedisServer
) -> None:
    """After a catch-up read from the log, pub/sub may still bring events the log gave:
    a node delivers each event id of a room once."""
    one, two = await make_node(), await make_node()
    alice, bob = await connect(one, "alice"), await connect(two, "bob")
    await alice.join("lobby")
    await bob.join("lobby")
    heard: list[bytes] = []
    async with aioredis.Redis.from_url(redis.url) as spy, spy.pubsub() as pubsub:
        await pubsub.subscribe("rtclient:fanout:0")
        await alice.say("lobby", "once", id="m1")
        while not heard:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=3.0)
            if message is not None and message["data"].startswith(b'["E"'):
                heard.append(message["data"])
        assert (await bob.expect("chat:message"))["eventId"] == 1
        await spy.publish("rtclient:fanout:0", heard[0])  # the same event again
        await alice.say("lobby", "twice?", id="m2")
    assert (await bob.expect("chat:message"))["eventId"] == 2
    await bob.silent("chat:message")


async def test_a_straggler_of_an_old_epoch_does_not_turn_a_node_back(
    make_node: MakeNode, connect: Connect, redis: RedisServer
) -> None:
    one = await make_node()
    alice = await connect(one, "alice")
    await alice.join("lobby")
    epoch = one.epoch
    stale = (
        '["E","lobby",1,1,"0123456789abcdef"]\n'
        '{"type":"chat:message","payload":{"roomId":"lobby","eventId":1,'
        '"epoch":"0123456789abcdef","messageId":"old","from":"x","text":"old","timestamp":0}}'
    )
    async with aioredis.Redis.from_url(redis.url) as spy:
        await spy.publish("rtclient:fanout:0", stale)
    ack = await alice.say("lobby", "now", id="m1")
    assert (await alice.expect("chat:message"))["messageId"] == "m1"
    assert ack["epoch"] == one.epoch == epoch and one.counters["epoch_changes"] == 0


async def test_a_malformed_message_on_the_channel_is_counted_and_fan_out_goes_on(
    make_node: MakeNode, connect: Connect, redis: RedisServer
) -> None:
    """Anything may publish on the channel (a tool, another version, another cluster
    with the same prefix): the node's reader must not die of it."""
    one, two = await make_node(), await make_node()
    alice, bob = await connect(one, "alice"), await connect(two, "bob")
    await alice.join("lobby")
    await bob.join("lobby")
    async with aioredis.Redis.from_url(redis.url) as spy:
        for junk in (b"not json", b'["E","lobby"]\n{}', b"[1]\n{}", b'"x"\n[]', b"\xff\n"):
            await spy.publish("rtclient:fanout:0", junk)
    await alice.say("lobby", "still here", id="m1")
    assert (await bob.expect("chat:message"))["text"] == "still here"
    assert two.counters["fanout_malformed"] == 5
    assert two.health()["redis"]["subscribed"] is True


async def test_two_clusters_on_two_databases_of_one_redis_do_not_hear_each_other(
    make_node: MakeNode, connect: Connect, redis: RedisServer
) -> None:
    """Pub/sub channels are not per database in Redis: ``redis://…/0`` and ``…/1``
    would share the channel and each other's typing and presence events."""
    one = await make_node(redis_url=f"{redis.url.rsplit('/', 1)[0]}/0")
    other = await make_node(redis_url=f"{redis.url.rsplit('/', 1)[0]}/1")
    alice, bob = await connect(one, "alice"), await connect(other, "bob")
    await alice.join("lobby")
    await bob.join("lobby")
    await bob.ok("typing:start", {"roomId": "lobby"})
    await bob.say("lobby", "only here", id="m1")
    assert (await bob.expect("chat:message"))["text"] == "only here"
    await alice.silent("typing:start")
    await alice.silent("user:joined")
    assert one.counters["epoch_changes"] == other.counters["epoch_changes"] == 0


async def test_dedupe_keys_of_two_users_never_collide(
    make_node: MakeNode, connect: Connect
) -> None:
    """``dd:USER:MSGID`` alone is ambiguous: ("a:x", "y") and ("a", "x:y")."""
    node = await make_node()
    first, second = await connect(node, "a:x"), await connect(node, "a")
    await first.join("lobby")
    await second.join("lobby")
    one = await first.say("lobby", "same", id="y")
    two = await second.say("lobby", "same", id="x:y")
    assert (one["eventId"], one["duplicate"]) == (1, False)
    assert (two["eventId"], two["duplicate"]) == (2, False)


async def test_any_text_can_be_sent_even_the_placeholder_of_the_event_id(
    make_node: MakeNode, connect: Connect
) -> None:
    """The commit fills the event id into the payload at a placeholder number; a text
    (or a room id) that holds that number must not break the commit."""
    node = await make_node()
    alice = await connect(node, "alice")
    text = f'{-(2**52)} and "eventId":{-(2**52)}'
    await alice.join("lobby")
    ack = await alice.say("lobby", text, id="m1")
    got = await alice.expect("chat:message")
    assert (got["eventId"], got["text"]) == (ack["eventId"], text)
