"""Redis connections reset by the peer while idle in a node's pool (a partition that
sends RSTs, as ``Cluster.partition`` does).

redis-py takes such a connection for healthy (its reader holds the error, not an EOF),
and on Python 3.12 and 3.13 writing to it raised ``AttributeError``/``TypeError`` from
inside asyncio: no retry, no outage handling. The fan-out's reader died of it while it
caught up after the partition, and the node went on taking clients and acking their
messages without fanning out a single event again (the cluster chaos run with
``RT_SOAK_SEED=937079`` lost 35 acknowledged messages that way, no gap announced).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from fake_server.redis_store import RedisStore
from fake_server.server import FakeServer
from rtclient.testing import wait_until
from rtclient.testing.proxy import FaultProxy
from rtclient.testing.redis_server import RedisServer

from ..server.conftest import Connect
from ..server.helpers import WsClient
from .conftest import MakeNode

pytestmark = pytest.mark.cluster


def _store(node: FakeServer) -> RedisStore:
    store = node.hub.storage
    assert isinstance(store, RedisStore)
    return store


async def _fill_pool(store: RedisStore, count: int) -> None:
    """Leave ``count`` connections idle in the node's pool (commands at once)."""
    blocked = [store.link.client.execute_command("BLPOP", "nothing", 0.05) for _ in range(count)]
    await asyncio.gather(*blocked)


async def _lobby_across(
    proxy: FaultProxy, make_node: MakeNode, connect: Connect
) -> tuple[FakeServer, WsClient, WsClient]:
    """Bob on a node that reaches Redis through ``proxy`` (returned), alice on one that
    reaches it directly, both in the lobby."""
    away = await make_node(redis_url=f"redis://127.0.0.1:{proxy.port}/0", redis_cutoff=30.0)
    home = await make_node()
    alice, bob = await connect(home, "alice"), await connect(away, "bob")
    await alice.join("lobby")
    await bob.join("lobby")
    return away, alice, bob


def _idle_dead(store: RedisStore) -> int:
    """Idle pooled connections whose transport the peer closed."""
    pool = store.link.client.connection_pool
    return sum(
        1
        for conn in pool._available_connections
        if conn._writer is not None and conn._writer.transport.is_closing()
    )


async def test_a_command_on_a_pooled_connection_the_peer_reset_goes_on_a_fresh_one(
    redis: RedisServer, make_node: MakeNode
) -> None:
    async with FaultProxy(upstream=("127.0.0.1", redis.port)) as proxy:
        node = await make_node(redis_url=f"redis://127.0.0.1:{proxy.port}/0", redis_cutoff=30.0)
        store = _store(node)
        await _fill_pool(store, 4)
        await proxy.down(reset=True)
        await wait_until(lambda: _idle_dead(store) >= 4, timeout=3.0)
        await proxy.up()
        # Commands at once, each on a reset connection first: a ConnectionError that
        # redis-py retries on a fresh one (3.12/3.13 raised AttributeError/TypeError).
        await _fill_pool(store, 4)
        assert _idle_dead(store) == 0
        assert await store.link.client.set("key", "value") is True


async def test_a_node_back_from_a_partition_with_resets_fans_out_again(
    redis: RedisServer, make_node: MakeNode, connect: Connect
) -> None:
    async with FaultProxy(upstream=("127.0.0.1", redis.port)) as proxy:
        away, alice, bob = await _lobby_across(proxy, make_node, connect)
        await alice.say("lobby", "seen", id="m0")
        await bob.expect("chat:message")
        store = _store(away)
        # Idle connections in the pool when the link is cut with RSTs: the fan-out's
        # catch-up after the partition reads the missed events on one of them.
        await _fill_pool(store, 6)
        await proxy.down(reset=True)
        await wait_until(lambda: _idle_dead(store) >= 6, timeout=3.0)
        for n in range(1, 4):
            await alice.say("lobby", f"missed {n}", id=f"m{n}")
        await proxy.up()
        got = [await bob.expect("chat:message", timeout=3.0) for _ in range(3)]
        assert [e["eventId"] for e in got] == [2, 3, 4]
        # The fan-out still runs: live events reach the node's members.
        await alice.say("lobby", "live again", id="m4")
        assert (await bob.expect("chat:message", timeout=3.0))["eventId"] == 5
        assert store.fanout.subscribed


async def test_the_fan_out_reader_outlives_an_error_that_is_not_redis(
    redis: RedisServer, make_node: MakeNode, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FaultProxy(upstream=("127.0.0.1", redis.port)) as proxy:
        away, alice, bob = await _lobby_across(proxy, make_node, connect)
        await alice.say("lobby", "seen", id="m0")
        await bob.expect("chat:message")
        store = _store(away)
        read_log = store.events_after
        leaks = [AttributeError("'NoneType' object has no attribute '_add_writer'")]

        async def leaky(*args: Any) -> list[tuple[str, bytes]]:
            # What redis-py let out on 3.12 (a library's bug): once, on the catch-up.
            if leaks:
                raise leaks.pop()
            return await read_log(*args)

        monkeypatch.setattr(store, "events_after", leaky)
        await proxy.down()
        await wait_until(lambda: not store.fanout.subscribed, timeout=3.0)
        for n in range(1, 4):
            await alice.say("lobby", f"missed {n}", id=f"m{n}")
        await proxy.up()
        got = [await bob.expect("chat:message", timeout=3.0) for _ in range(3)]
        assert [e["eventId"] for e in got] == [2, 3, 4]
        assert not leaks and away.counters["fanout_errors"] == 1
        await alice.say("lobby", "live again", id="m4")
        assert (await bob.expect("chat:message", timeout=3.0))["eventId"] == 5


async def test_the_heartbeat_outlives_an_error_that_is_not_redis(
    make_node: MakeNode, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    away, home = await make_node(), await make_node()
    alice, bob = await connect(home, "alice"), await connect(away, "bob")
    await alice.join("lobby")
    await bob.join("lobby")
    store = _store(away)
    beat = store._heartbeat_once
    beats: list[str] = []

    async def leaky() -> tuple[str, bool]:
        # What redis-py let out on 3.12 (a library's bug): once.
        if not beats:
            beats.append("leak")
            raise AttributeError("'NoneType' object has no attribute '_add_writer'")
        beats.append("beat")
        return await beat()

    monkeypatch.setattr(store, "_heartbeat_once", leaky)
    # Three more beats: a node_ttl (0.6 s) and more after the error, the node is alive.
    await wait_until(lambda: beats.count("beat") >= 3, timeout=5.0)
    assert away.counters["heartbeat_errors"] == 1
    await alice.say("lobby", "still here?", id="m1")
    assert (await bob.expect("chat:message"))["messageId"] == "m1"
    assert (await alice.ok("room:members", {"roomId": "lobby"}))["members"] == ["alice", "bob"]


async def test_a_fan_out_failure_that_persists_backs_off_and_stays_in_the_log(
    redis: RedisServer,
    make_node: MakeNode,
    connect: Connect,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with FaultProxy(upstream=("127.0.0.1", redis.port)) as proxy:
        away, alice, bob = await _lobby_across(proxy, make_node, connect)
        store = _store(away)
        # In /health from 0, as every counter of a cluster node.
        assert away.counters["fanout_errors"] == away.counters["heartbeat_errors"] == 0
        read_log = store.events_after
        broken = True

        async def leaky(*args: Any) -> list[tuple[str, bytes]]:
            if broken:  # a bug that every catch-up meets, until it is gone
                raise AttributeError("'NoneType' object has no attribute '_add_writer'")
            return await read_log(*args)

        monkeypatch.setattr(store, "events_after", leaky)
        caplog.set_level(logging.DEBUG, logger="fake_server.redis")
        await proxy.down()
        await wait_until(lambda: not store.fanout.subscribed, timeout=3.0)
        await alice.say("lobby", "missed", id="m1")
        started = asyncio.get_running_loop().time()
        await proxy.up()
        await wait_until(lambda: away.counters["fanout_errors"] >= 5, timeout=10.0)
        # Backed off, not spinning: 0.05 + 0.1 + 0.2 + 0.4 s at least between five tries.
        assert asyncio.get_running_loop().time() - started >= 0.75
        failed = [r for r in caplog.records if r.getMessage().startswith("fan-out reader failed")]
        # In full at ERROR the 1st, 2nd and 4th time: a failure that persists stays visible.
        assert [r.levelno for r in failed[:5]] == [logging.ERROR] * 2 + [
            logging.DEBUG,
            logging.ERROR,
            logging.DEBUG,
        ]
        broken = False
        assert (await bob.expect("chat:message", timeout=5.0))["messageId"] == "m1"
