"""Every fault control, observed from a plain websockets client."""

from __future__ import annotations

import asyncio
import time

import pytest
from websockets.exceptions import InvalidStatus

from fake_server import FakeServer
from rtclient.testing import wait_until

from .conftest import Connect, MakeServer
from .helpers import QUIET, bearer, open_ws


async def test_drop_connections_cuts_without_close_frame(
    server: FakeServer, connect: Connect
) -> None:
    alice, bob = await connect(server, "alice"), await connect(server, "bob")
    await server.drop_connections()
    assert await alice.closed() == (None, "")
    assert await bob.closed() == (None, "")
    assert server.connection_count() == 0
    again = await connect(server, "alice")  # still listening
    assert again.welcome["userId"] == "alice"


@pytest.mark.parametrize(("code", "reason"), [(1001, ""), (1012, "bye"), (1013, "retryAfter=2")])
async def test_close_all_sends_the_code(
    server: FakeServer, connect: Connect, code: int, reason: str
) -> None:
    alice = await connect(server, "alice")
    await server.close_all(code, reason)
    assert await alice.closed() == (code, reason)
    assert server.connection_count() == 0


async def test_restart_keeps_port_and_log(server: FakeServer, connect: Connect) -> None:
    port, epoch = server.port, server.epoch
    alice = await connect(server, "alice")
    await alice.join("lobby")
    first = await alice.say("lobby", "kept", id="k1")
    await server.restart()
    assert await alice.closed() == (1012, "service restart")
    assert (server.port, server.epoch) == (port, epoch)
    alice = await connect(server, "alice")
    assert (await alice.join("lobby"))["lastEventId"] == 1
    assert (await alice.say("lobby", "kept", id="k1"))["duplicate"] is True
    assert (await alice.say("lobby", "next"))["eventId"] == first["eventId"] + 1


async def test_restart_without_log_is_a_new_epoch(server: FakeServer, connect: Connect) -> None:
    epoch = server.epoch
    alice = await connect(server, "alice")
    await alice.join("lobby")
    await alice.say("lobby", "lost", id="k1")
    await server.restart(keep_log=False)
    assert server.epoch != epoch and server.room_events("lobby") == []
    alice = await connect(server, "alice")
    assert alice.welcome["epoch"] == server.epoch
    assert (await alice.join("lobby"))["lastEventId"] == 0
    ack = await alice.say("lobby", "lost", id="k1")  # the dedupe table is gone too
    assert ack["duplicate"] is False and ack["eventId"] == 1


async def test_restart_refuses_connections_during_downtime(
    server: FakeServer, connect: Connect
) -> None:
    alice = await connect(server, "alice")
    restart = asyncio.create_task(server.restart(downtime=0.5))
    assert (await alice.closed())[0] == 1012
    with pytest.raises(OSError):
        await open_ws(server.ws_url, bearer(server.issue_token("alice")))
    await restart
    assert (await connect(server, "alice")).welcome["userId"] == "alice"


async def test_pause_freezes_connections_and_handshakes(
    make_server: MakeServer, connect: Connect
) -> None:
    # Server heartbeats would close a silent peer within 0.15 s if they ran while paused.
    server = await make_server(ping_interval=0.05, ping_timeout=0.1)
    alice = await connect(server, "alice")
    await server.pause()
    pong = await alice.ws.ping()
    await alice.send({"type": "ping", "id": "p1", "payload": {"ts": 1}})
    handshake = asyncio.create_task(open_ws(server.ws_url, bearer(server.issue_token("bob"))))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(pong), QUIET)
    await alice.silent("ack", within=QUIET)
    assert not handshake.done()
    await server.resume()
    await asyncio.wait_for(pong, 2)
    assert (await alice.expect_ack("p1"))["ts"] == 1
    bob = await asyncio.wait_for(handshake, 2)
    await bob.expect("connected")
    await bob.ws.close()
    assert server.counters["heartbeat_timeouts"] == 0
    assert (await alice.ok("ping", {"ts": 2}))["ts"] == 2


async def test_reject_handshakes_with_http_status(server: FakeServer, connect: Connect) -> None:
    await server.reject_handshakes(2, 503, retry_after=3)
    for _ in range(2):
        with pytest.raises(InvalidStatus) as info:
            await open_ws(server.ws_url, bearer(server.issue_token("alice")))
        assert info.value.response.status_code == 503
        assert info.value.response.headers["Retry-After"] == "3"
    assert (await connect(server, "alice")).welcome["userId"] == "alice"
    await server.reject_handshakes(1, 429)
    with pytest.raises(InvalidStatus) as info:
        await open_ws(server.ws_url, bearer(server.issue_token("alice")))
    assert info.value.response.status_code == 429
    assert "Retry-After" not in info.value.response.headers
    assert server.counters["handshakes"] == 4
    assert server.counters["handshakes_rejected"] == 3


async def test_reject_handshakes_with_close_code_after_connected(server: FakeServer) -> None:
    await server.reject_handshakes(1, 1013, retry_after=2)
    client = await open_ws(server.ws_url, bearer(server.issue_token("alice")))
    assert (await client.expect("connected"))["userId"] == "alice"
    assert await client.closed() == (1013, "retryAfter=2")
    await server.reject_handshakes(1, 4003)
    client = await open_ws(server.ws_url, bearer(server.issue_token("alice")))
    await client.expect("connected")
    assert await client.closed() == (4003, "")


async def test_expire_tokens(server: FakeServer, connect: Connect) -> None:
    old_token = server.issue_token("alice")
    alice = await connect(server, "alice")
    await server.expire_tokens()
    assert await alice.closed() == (4002, "TOKEN_EXPIRED")
    stale = await open_ws(server.ws_url, bearer(old_token))
    assert await stale.closed() == (4002, "TOKEN_EXPIRED")
    fresh = await connect(server, "alice")
    assert await fresh.fails("token:refresh", {"token": old_token}) == "TOKEN_EXPIRED"
    await fresh.ok("token:refresh", {"token": server.issue_token("alice")})


async def test_lose_next_acks(server: FakeServer, connect: Connect) -> None:
    alice, bob = await connect(server, "alice"), await connect(server, "bob")
    await alice.join("lobby")
    await bob.join("lobby")
    await server.lose_next_acks(1)
    await alice.send(
        {"type": "chat:send", "id": "lost", "payload": {"roomId": "lobby", "text": "a"}}
    )
    assert (await alice.expect("chat:message"))["messageId"] == "lost"
    assert (await bob.expect("chat:message"))["messageId"] == "lost"
    await alice.silent("ack")
    assert [e["messageId"] for e in server.room_events("lobby")] == ["lost"]
    assert server.counters["acks_lost"] == 1
    ack = await alice.say("lobby", "a", id="lost")  # the resend is answered
    assert ack["duplicate"] is True and ack["eventId"] == 1
    assert (await alice.say("lobby", "b"))["duplicate"] is False


async def test_duplicate_next_events(server: FakeServer, connect: Connect) -> None:
    alice, bob = await connect(server, "alice"), await connect(server, "bob")
    await alice.join("lobby")
    await bob.join("lobby")
    await server.duplicate_next_events(1)
    await alice.say("lobby", "twice")
    await alice.say("lobby", "once")
    for client in (alice, bob):
        texts = [(await client.expect("chat:message"))["text"] for _ in range(3)]
        assert texts == ["twice", "twice", "once"]
        await client.silent("chat:message")
    dm_bob = await connect(server, "bob")
    await server.duplicate_next_events(1)
    await alice.ok("dm:send", {"toUserId": "bob", "text": "dm"})
    assert (await dm_bob.expect("dm:message"))["eventId"] == 1
    assert (await dm_bob.expect("dm:message"))["eventId"] == 1
    assert server.counters["events_duplicated"] == 2


async def test_set_latency_delays_every_frame(server: FakeServer, connect: Connect) -> None:
    alice = await connect(server, "alice")
    await server.set_latency(200)
    started = time.monotonic()
    await alice.send({"type": "ping", "id": "a", "payload": {"ts": 1}})
    await alice.send({"type": "ping", "id": "b", "payload": {"ts": 2}})
    await alice.expect_ack("a")
    assert time.monotonic() - started >= 0.2
    # Order is kept: pong(a), ack(a), pong(b), ack(b).
    await alice.expect_ack("b")
    assert [f["type"] for f in alice.backlog] == ["pong", "pong"]
    await server.set_latency(0)
    await alice.ok("ping", {"ts": 3})


async def test_faults_work_on_unauthenticated_connections(make_server: MakeServer) -> None:
    server = await make_server(auth_timeout=30.0)
    waiting = await open_ws(server.ws_url)
    await wait_until(lambda: server.socket_count() == 1)
    await server.close_all(1012, "restart")
    assert await waiting.closed() == (1012, "restart")
