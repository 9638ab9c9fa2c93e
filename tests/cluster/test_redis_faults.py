"""Nodes through Redis restarts, a lost data set, an unreachable Redis and a dead node."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from websockets.exceptions import ConnectionClosed

from fake_server.redis_store import RedisStore
from fake_server.store import StoreUnavailable
from rtclient.testing import wait_until
from rtclient.testing.proxy import FaultProxy
from rtclient.testing.redis_server import RedisServer

from ..server.conftest import Connect
from .conftest import MakeNode

pytestmark = pytest.mark.cluster


async def test_a_redis_restart_that_keeps_its_data_keeps_the_epoch_and_the_log(
    make_node: MakeNode, connect: Connect, redis: RedisServer
) -> None:
    one, two = await make_node(), await make_node()
    alice, bob = await connect(one, "alice"), await connect(two, "bob")
    await alice.join("lobby")
    await bob.join("lobby")
    await alice.say("lobby", "before", id="m1")
    await bob.expect("chat:message")
    epoch = one.epoch
    await redis.restart(keep_data=True)
    # The next request may meet the restart: a retry reply, never a lost message.
    ack = await alice.request("chat:send", {"roomId": "lobby", "text": "after"}, id="m2")
    if not ack["success"]:
        assert ack["error"]["code"] == "INTERNAL" and ack["error"]["retryAfter"] <= 0.5
        ack = await alice.say("lobby", "after", id="m2")
    assert ack["eventId"] == 2 and ack["epoch"] == epoch
    got = await bob.expect("chat:message")
    assert (got["eventId"], got["text"], got["epoch"]) == (2, "after", epoch)
    assert one.epoch == two.epoch == epoch
    page = await bob.ok("sync:messages", {"roomId": "lobby", "lastEventId": 0, "epoch": epoch})
    assert [e["text"] for e in page["events"]] == ["before", "after"] and not page["truncated"]
    assert one.counters["epoch_changes"] == two.counters["epoch_changes"] == 0


async def test_a_lost_redis_data_set_is_a_new_epoch_on_every_node(
    make_node: MakeNode, connect: Connect, redis: RedisServer
) -> None:
    one, two = await make_node(), await make_node()
    alice, bob = await connect(one, "alice"), await connect(two, "bob")
    await alice.join("lobby")
    await bob.join("lobby")
    await alice.say("lobby", "lost", id="m1")
    old = one.epoch
    await redis.restart(keep_data=False)
    # Every node notices (heartbeat), agrees on one new epoch and sends its clients
    # away with 1012 so that they reconnect and see the gap.
    assert await alice.closed() == (1012, "new epoch")
    assert await bob.closed() == (1012, "new epoch")
    await wait_until(lambda: one.epoch == two.epoch != old, timeout=3.0)
    again = await connect(two, "alice")
    assert again.welcome["epoch"] == one.epoch
    await again.join("lobby")
    page = await again.ok("sync:messages", {"roomId": "lobby", "lastEventId": 1, "epoch": old})
    assert page["truncated"] is True and page["events"] == [] and page["epoch"] != old
    ack = await again.say("lobby", "fresh", id="m1")  # the dedupe table went with the log
    assert (ack["eventId"], ack["duplicate"]) == (1, False)


async def test_an_unreachable_redis_gets_retry_replies_then_the_node_recovers(
    redis: RedisServer, make_node: MakeNode, connect: Connect
) -> None:
    async with FaultProxy(upstream=("127.0.0.1", redis.port)) as proxy:
        node = await make_node(redis_url=f"redis://127.0.0.1:{proxy.port}/0", redis_cutoff=30.0)
        other = await make_node()
        alice, bob = await connect(node, "alice"), await connect(other, "bob")
        await alice.join("lobby")
        await bob.join("lobby")
        await proxy.down()
        for n in range(3):
            ack = await alice.request("chat:send", {"roomId": "lobby", "text": "x"}, id=f"m{n}")
            assert ack["success"] is False
            error = ack["error"]
            assert error["code"] == "INTERNAL" and error["reason"] == "STORE_UNAVAILABLE"
            assert 0.1 <= error["retryAfter"] <= 0.5
        assert node.counters["store_unavailable"] == 3
        assert node.counters["redis_outages"] == 1  # one episode, logged once
        health = node.health()["redis"]
        assert health["reachable"] is False and health["outages"] == 1
        await proxy.up()
        await wait_until(lambda: node.health()["redis"]["subscribed"], timeout=3.0)
        for n in range(3):
            await alice.say("lobby", "x", id=f"m{n}")
        assert [e["messageId"] for e in await other.read_log("lobby")] == ["m0", "m1", "m2"]
        assert [(await bob.expect("chat:message"))["messageId"] for _ in range(3)] == [
            "m0",
            "m1",
            "m2",
        ]
        assert node.health()["redis"]["reachable"] is True


async def test_a_node_cut_off_from_redis_dies_for_the_cluster_and_sends_its_clients_away(
    redis: RedisServer, make_node: MakeNode, connect: Connect
) -> None:
    async with FaultProxy(upstream=("127.0.0.1", redis.port)) as proxy:
        lost = await make_node(redis_url=f"redis://127.0.0.1:{proxy.port}/0")
        alive = await make_node()
        alice, bob = await connect(alive, "alice"), await connect(lost, "bob")
        await alice.join("lobby")
        await bob.join("lobby")
        await alice.expect("user:joined")
        await proxy.down()
        # Its heartbeat stops: within node_ttl the others take its members for gone.
        left = await alice.expect("user:left", timeout=3.0)
        assert left["userId"] == "bob"
        assert (await alice.ok("room:members", {"roomId": "lobby"}))["members"] == ["alice"]
        # Past redis_cutoff the node closes its clients: go elsewhere, retry later.
        assert await bob.closed(timeout=5.0) == (1013, "retryAfter=0.5")
        assert lost.counters["redis_cutoffs"] == 1
        # New clients are refused while the node is cut off.
        with pytest.raises(Exception, match="503"):
            await connect(lost, "carol")
        await proxy.up()
        await wait_until(lambda: lost.health()["redis"]["reachable"], timeout=3.0)
        carol = await connect(lost, "carol")
        await carol.join("lobby")
        assert (await alice.expect("user:joined"))["userId"] == "carol"


async def test_a_node_back_from_a_short_partition_catches_up_and_rejoins_presence(
    redis: RedisServer, make_node: MakeNode, connect: Connect
) -> None:
    async with FaultProxy(upstream=("127.0.0.1", redis.port)) as proxy:
        away = await make_node(redis_url=f"redis://127.0.0.1:{proxy.port}/0", redis_cutoff=30.0)
        home = await make_node()
        alice, bob = await connect(home, "alice"), await connect(away, "bob")
        await alice.join("lobby")
        await bob.join("lobby")
        await alice.expect("user:joined")
        await alice.say("lobby", "seen", id="m0")
        await bob.expect("chat:message")
        await proxy.down()
        # Long enough for the cluster to take the node for dead.
        assert (await alice.expect("user:left", timeout=3.0))["userId"] == "bob"
        for n in range(1, 6):
            await alice.say("lobby", f"missed {n}", id=f"m{n}")
        await proxy.up()
        # The node reads what its subscription missed from the log, in order, once.
        got = [await bob.expect("chat:message") for _ in range(5)]
        assert [e["eventId"] for e in got] == [2, 3, 4, 5, 6]
        await bob.silent("chat:message")
        assert away.counters["fanout_fills"] == 5
        # And bob is back in the room for everyone.
        assert (await alice.expect("user:joined", timeout=3.0))["userId"] == "bob"
        assert (await alice.ok("room:members", {"roomId": "lobby"}))["members"] == [
            "alice",
            "bob",
        ]
        await alice.say("lobby", "live again", id="m6")
        assert (await bob.expect("chat:message"))["eventId"] == 7


async def test_restart_without_the_log_on_one_node_is_a_new_epoch_for_the_cluster(
    make_node: MakeNode, connect: Connect
) -> None:
    one, two = await make_node(), await make_node()
    alice, bob = await connect(one, "alice"), await connect(two, "bob")
    await alice.join("lobby")
    await alice.say("lobby", "old", id="m1")
    old = two.epoch
    await one.restart(keep_log=False)
    assert await bob.closed() == (1012, "new epoch")
    assert await alice.closed() == (1012, "service restart")
    await wait_until(lambda: one.epoch == two.epoch != old, timeout=3.0)
    assert await two.read_log("lobby") == []
    assert two.counters["epoch_changes"] == 1


async def test_a_redis_that_comes_back_with_an_older_snapshot_is_a_new_epoch(
    make_node: MakeNode, connect: Connect, redis: RedisServer
) -> None:
    """A crash between two snapshots (RDB, AOF everysec, a lagging replica promoted):
    the counter goes back, so event id 2 would be given out again in the same epoch
    and every client holding the first #2 would drop the new one as a duplicate."""
    one, two = await make_node(), await make_node()
    alice, bob = await connect(one, "alice"), await connect(two, "bob")
    await alice.join("lobby")
    await bob.join("lobby")
    await alice.say("lobby", "saved", id="m1")
    assert (await redis.command("SAVE")).startswith(b"+OK")
    await alice.say("lobby", "lost", id="m2")
    assert [(await bob.expect("chat:message"))["text"] for _ in range(2)] == ["saved", "lost"]
    old = one.epoch
    await redis.kill()  # a crash: what came after the last SAVE is gone
    await redis.start(load=True)
    # The nodes notice (heartbeat) and start a new epoch: a gap for the clients.
    assert await bob.closed() == (1012, "new epoch")
    assert await alice.closed() == (1012, "new epoch")
    await wait_until(lambda: one.epoch == two.epoch != old, timeout=3.0)
    carol = await connect(two, "carol")
    await carol.join("lobby")
    page = await carol.ok("sync:messages", {"roomId": "lobby", "lastEventId": 2, "epoch": old})
    assert page["truncated"] is True and page["epoch"] == one.epoch
    assert [e["text"] for e in page["events"]] == []  # the old epoch's events are not replayed
    ack = await carol.say("lobby", "fresh", id="m3")
    assert ack["epoch"] == one.epoch != old
    page = await carol.ok(
        "sync:messages", {"roomId": "lobby", "lastEventId": 0, "epoch": one.epoch}
    )
    assert [e["text"] for e in page["events"]] == ["fresh"]


async def test_a_commit_on_an_older_snapshot_starts_the_new_epoch_instead_of_reusing_an_id(
    make_node: MakeNode, connect: Connect, redis: RedisServer
) -> None:
    """The commit script itself checks (a heartbeat may be seconds away)."""
    node = await make_node(node_ttl=60.0)
    alice = await connect(node, "alice")
    await alice.join("lobby")
    await alice.say("lobby", "saved", id="m1")
    assert (await redis.command("SAVE")).startswith(b"+OK")
    await alice.say("lobby", "lost", id="m2")
    old = node.epoch
    await redis.kill()
    await redis.start(load=True)
    closed: tuple[int | None, str] | None = None
    for _ in range(3):  # the first may meet the dead connection: a retry reply
        try:
            ack = await alice.request("chat:send", {"roomId": "lobby", "text": "x"}, id="m3")
        except ConnectionClosed as exc:  # the new epoch sends everyone away (1012)
            closed = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (None, "")
            break
        assert ack["success"] is False, ack  # never #2 again in the old epoch
        if node.epoch != old:
            break
    if closed is None:
        closed = await alice.closed()
    assert closed == (1012, "new epoch")
    assert node.epoch != old and node.counters["epoch_changes"] == 1


async def test_a_redis_that_refuses_commands_is_an_outage_and_the_heartbeat_goes_on(
    make_node: MakeNode, connect: Connect, redis: RedisServer
) -> None:
    """Redis answers with an error (here out of memory; READONLY on a demoted primary
    is another): requests get retry replies, the node keeps beating and is alive
    again once Redis accepts."""
    node = await make_node()
    alice = await connect(node, "alice")
    await alice.join("lobby")
    key = f"rtclient:node:{node.node_id}"
    errors = node.counters["redis_errors"]
    assert (await redis.command("CONFIG", "SET", "maxmemory", "1")).startswith(b"+OK")
    ack = await alice.request("chat:send", {"roomId": "lobby", "text": "x"}, id="m1")
    assert ack["error"]["reason"] == "STORE_UNAVAILABLE" and ack["error"]["retryAfter"] > 0
    await wait_until(lambda: node.counters["redis_errors"] >= errors + 3, timeout=5.0)
    assert (await redis.command("CONFIG", "SET", "maxmemory", "0")).startswith(b"+OK")
    async with aioredis.Redis.from_url(redis.url) as spy:
        await spy.delete(key)

        async def alive() -> bool:
            return bool(await spy.exists(key))

        await wait_until(alive, timeout=5.0, interval=0.05, message="the heartbeat stopped")
    assert (await alice.say("lobby", "x", id="m1"))["eventId"] == 1


async def test_a_node_restarted_under_its_old_id_forgets_the_members_of_its_past_life(
    make_node: MakeNode, connect: Connect, redis: RedisServer
) -> None:
    """``--node-id a`` SIGKILLed and started again within ``node_ttl``: its old presence
    entries must not live on under the new process's liveness key."""
    watcher = await make_node()
    bob = await connect(watcher, "bob")
    await bob.join("lobby")
    async with aioredis.Redis.from_url(redis.url) as spy:  # what the killed "a" left
        await spy.sadd("rtclient:pres:lobby", "a|ghost")
        await spy.sadd("rtclient:noderooms:a", "lobby")
        await spy.sadd("rtclient:nodes", "a")
        await spy.set("rtclient:node:a", "1", px=60_000)
    assert "ghost" in await watcher.hub.storage.members("lobby")
    await make_node(node_id="a")
    assert "ghost" not in await watcher.hub.storage.members("lobby")
    assert (await bob.expect("user:left"))["userId"] == "ghost"


async def test_presence_changes_during_a_short_outage_reach_the_cluster_afterwards(
    redis: RedisServer, make_node: MakeNode, connect: Connect
) -> None:
    """A leave (a client gone) and a join (refused, then sent again) while Redis was
    out of reach: once it answers, the other nodes see the right members (the leave
    was lost for good: alice stayed a member for as long as the node ran)."""
    async with FaultProxy(upstream=("127.0.0.1", redis.port)) as proxy:
        node = await make_node(redis_url=f"redis://127.0.0.1:{proxy.port}/0", node_ttl=30.0)
        other = await make_node()
        alice, carol = await connect(node, "alice"), await connect(node, "carol")
        bob = await connect(other, "bob")
        await bob.join("lobby")
        await alice.join("lobby")
        assert (await bob.expect("user:joined"))["userId"] == "alice"
        await proxy.down()
        await alice.ws.close()  # its leave cannot reach Redis
        ack = await carol.request("room:join", {"roomId": "lobby"})
        assert ack["error"]["reason"] == "STORE_UNAVAILABLE"
        await proxy.up()
        await wait_until(lambda: node.health()["redis"]["subscribed"], timeout=3.0)
        await carol.join("lobby")  # sent again, as a client does after a retry reply

        async def members() -> list[str]:
            return await other.hub.storage.members("lobby")

        await wait_until(lambda: _is(members(), ["bob", "carol"]), timeout=5.0)
        heard = {(await bob.expect(kind))["userId"] for kind in ("user:left", "user:joined")}
        assert heard == {"alice", "carol"}


async def _is(value: Awaitable[list[str]], expected: list[str]) -> bool:
    return await value == expected


async def test_a_join_refused_by_the_store_leaves_no_half_joined_connection(
    make_node: MakeNode, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis lost between the rate check and the join script (fault injected there):
    the join sent again must record presence and tell the room."""
    node, other = await make_node(), await make_node()
    bob = await connect(other, "bob")
    await bob.join("lobby")
    carol = await connect(node, "carol")
    link = node.hub.storage.link
    script = link.script
    failures = [StoreUnavailable("injected", 0.1)]

    async def failing(name: str, keys: list[str], args: list[Any]) -> Any:
        if name == "JOIN" and failures:
            raise failures.pop()
        return await script(name, keys, args)

    monkeypatch.setattr(link, "script", failing)
    ack = await carol.request("room:join", {"roomId": "lobby"})
    assert ack["error"]["reason"] == "STORE_UNAVAILABLE" and not failures
    await carol.join("lobby")
    assert (await bob.expect("user:joined"))["userId"] == "carol"
    assert await other.hub.storage.members("lobby") == ["bob", "carol"]


async def test_a_node_that_cannot_subscribe_fails_to_start_and_leaves_nothing_behind(
    redis: RedisServer, make_node: MakeNode
) -> None:
    """A Redis user without SUBSCRIBE (an ACL): start raises within the bounds, no hang,
    no task or connection left (``filterwarnings = error`` catches a leaked socket)."""
    reply = await redis.command(
        "ACL", "SETUSER", "nosub", "on", ">pw", "~*", "&*", "+@all", "-subscribe"
    )
    assert reply.startswith(b"+OK")
    url = f"redis://nosub:pw@127.0.0.1:{redis.port}/0"
    with pytest.raises(ConnectionError, match="subscribe"):
        async with asyncio.timeout(5.0):
            await make_node(redis_url=url)


async def test_a_redis_that_may_evict_keys_is_named_in_a_warning_at_start(
    redis: RedisServer, make_node: MakeNode, caplog: pytest.LogCaptureFixture
) -> None:
    """An evicted counter gives ids out again, an evicted dedupe entry doubles a
    message: only ``noeviction`` keeps the promises, and the node says so."""
    await make_node()
    assert "maxmemory-policy" not in caplog.text
    reply = await redis.command("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    assert reply.startswith(b"+OK")
    node = await make_node()
    assert f"node {node.node_id}: redis maxmemory-policy is allkeys-lru" in caplog.text


async def test_a_commit_during_a_reset_never_reuses_an_event_id_of_the_old_epoch(
    make_node: MakeNode, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``restart(keep_log=False)`` on one node while another commits: the reset is one
    step, so no commit lands between dropping the counters and the new epoch."""
    one, two = await make_node(), await make_node()
    alice = await connect(one, "alice")
    await alice.join("lobby")
    old = one.epoch
    assert (await alice.say("lobby", "first", id="m1"))["eventId"] == 1
    fresh = await make_node()  # has seen no event: nothing to compare with
    carol = await connect(fresh, "carol")
    await carol.join("lobby")
    acks: list[dict[str, Any]] = []
    redis = one.hub.storage.redis
    set_key = redis.set

    async def set_then(*args: Any, **kw: Any) -> Any:  # the old reset's last step
        acks.append(await carol.request("chat:send", {"roomId": "lobby", "text": "x"}))
        return await set_key(*args, **kw)

    monkeypatch.setattr(redis, "set", set_then)
    await one.restart(keep_log=False)
    for ack in acks:
        assert not (ack["success"] and ack["epoch"] == old), ack
    await wait_until(lambda: one.epoch == two.epoch == fresh.epoch != old, timeout=3.0)


async def test_a_redis_back_with_a_snapshot_of_an_epoch_already_left_starts_a_new_one(
    make_node: MakeNode, connect: Connect, redis: RedisServer
) -> None:
    """Epoch 1, a reset to epoch 2, then Redis restarts from a snapshot of epoch 1:
    going back to epoch 1 would give its ids out again to clients that saw them."""
    node = await make_node()
    alice = await connect(node, "alice")
    await alice.join("lobby")
    await alice.say("lobby", "one", id="m1")
    first = node.epoch
    assert (await redis.command("SAVE")).startswith(b"+OK")
    await node.restart(keep_log=False)
    second = node.epoch
    assert second != first
    await redis.kill()
    await redis.start(load=True)  # the snapshot holds epoch 1
    await wait_until(lambda: node.epoch not in (first, second), timeout=5.0)
    bob = await connect(node, "bob")
    assert bob.welcome["epoch"] not in (first, second)


async def test_a_write_on_a_connection_redis_reset_is_a_connection_error(
    redis: RedisServer, make_node: MakeNode
) -> None:
    """A connection the pool handed out, reset by the peer (a Redis restart, a
    partition) before the command is written: redis-py's ``ConnectionError``, which it
    retries on a new connection and the node maps to a retry reply. On CPython 3.12 and
    3.13.0-3.13.9 the write raised ``AttributeError``/``TypeError`` (CPython gh-136234)
    that nothing retried: the request got "internal error" (the cluster chaos run's
    lost and never acknowledged messages under load)."""
    async with FaultProxy(upstream=("127.0.0.1", redis.port)) as proxy:
        node = await make_node(redis_url=f"redis://127.0.0.1:{proxy.port}/0", redis_cutoff=30.0)
        store = node.hub.storage
        assert isinstance(store, RedisStore)
        pool = store.link.client.connection_pool
        conn = await pool.get_connection()
        try:
            await conn.send_command("PING")
            assert await conn.read_response() == b"PONG"
            await proxy.down(reset=True)
            # redis-py shows no transport state: its writer, privately.
            await wait_until(lambda: conn._writer is None or conn._writer.transport.is_closing())
            with pytest.raises(RedisConnectionError):
                await conn.send_command("PING")
        finally:
            await pool.release(conn)
        await proxy.up()
        assert await store.link.client.ping()
