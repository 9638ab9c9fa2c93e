"""Every fault control, heartbeat and lifecycle, observed on Socket.IO clients."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
import socketio
import websockets

from fake_server import FakeServer
from fake_server.sio_endpoint import SioEndpoint
from rtclient.testing import wait_until

from .conftest import SECRET, Connect, MakeServer
from .helpers import QUIET, WAIT, bearer, open_ws
from .sio_helpers import OpenSio, SioUser, open_sio, sio_users


@pytest.fixture
async def sio() -> AsyncIterator[OpenSio]:
    async with sio_users() as open_user:
        yield open_user


async def test_drop_connections_is_a_transport_error(
    server: FakeServer, sio: OpenSio, connect: Connect
) -> None:
    alice, raw = await sio(server, "alice"), await connect(server, "bob")
    await server.drop_connections()
    assert await alice.disconnected() == "transport error"
    assert alice.backlog == []  # no error event: the transport was cut
    assert await raw.closed() == (None, "")
    assert server.connection_count() == 0
    again = await sio(server, "alice")
    assert again.welcome["userId"] == "alice"


@pytest.mark.parametrize(
    ("code", "reason", "name"),
    [(1001, "", "GOING_AWAY"), (1012, "bye", "SERVICE_RESTART"), (4003, "", "FORBIDDEN")],
)
async def test_close_all_emits_error_then_disconnects(
    server: FakeServer, sio: OpenSio, code: int, reason: str, name: str
) -> None:
    alice = await sio(server, "alice")
    await server.close_all(code, reason)
    error = await alice.expect("error")
    assert (error["code"], error["closeCode"], error["reason"]) == (name, code, reason)
    assert await alice.disconnected() == "server disconnect"
    assert server.connection_count() == 0 and server.socket_count() == 0


async def test_restart_brings_both_endpoints_back_on_the_same_port(
    server: FakeServer, sio: OpenSio, connect: Connect
) -> None:
    port = server.port
    alice, bob = await sio(server, "alice"), await connect(server, "bob")
    await alice.join("lobby")
    first = await alice.say("lobby", "kept", message_id="k1")
    restart = asyncio.create_task(server.restart(downtime=0.3))
    assert (await alice.expect("error"))["closeCode"] == 1012
    assert await alice.disconnected() == "server disconnect"
    assert (await bob.closed())[0] == 1012
    with pytest.raises(socketio.exceptions.ConnectionError):
        await open_sio(server, "alice")
    await restart
    assert server.port == port
    alice = await sio(server, "alice")
    assert (await alice.join("lobby"))["lastEventId"] == first["eventId"]
    assert (await alice.say("lobby", "kept", message_id="k1"))["duplicate"] is True
    assert (await connect(server, "bob")).welcome["userId"] == "bob"


async def test_pause_freezes_socketio_too(make_server: MakeServer, sio: OpenSio) -> None:
    # engine.io pings every 50 ms; the client gives up after ping_timeout without one.
    server = await make_server(ping_interval=0.05, ping_timeout=1.0)
    alice = await sio(server, "alice")
    await wait_until(lambda: server.latency.total >= 2)
    await server.pause()
    samples = server.latency.total
    call = asyncio.create_task(alice.call("ping", {"ts": 1}))
    handshake = asyncio.create_task(open_sio(server, "bob"))
    await alice.silent("pong", within=QUIET)
    assert not call.done() and not handshake.done()
    assert server.latency.total <= samples + 1  # at most a ping already in flight
    await server.resume()
    assert (await asyncio.wait_for(call, WAIT))["ts"] == 1
    bob = await asyncio.wait_for(handshake, WAIT)
    await wait_until(lambda: server.latency.total >= samples + 3)
    assert alice.client.connected and server.counters["heartbeat_timeouts"] == 0
    await bob.close()


async def test_reject_handshakes_with_http_status(server: FakeServer) -> None:
    await server.reject_handshakes(2, 503, retry_after=3)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await open_sio(server, "alice")
    url = f"{server.sio_url}/socket.io/?EIO=4&transport=polling"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 503 and response.headers["Retry-After"] == "3"
    alice = await open_sio(server, "alice")
    assert server.counters["handshakes"] == 3
    assert server.counters["handshakes_rejected"] == 2
    await alice.close()


async def test_reject_handshakes_with_a_close_code(server: FakeServer) -> None:
    await server.reject_handshakes(1, 1013, retry_after=2)
    alice = await open_sio(server, "alice")
    assert alice.welcome["userId"] == "alice"
    error = await alice.expect("error")
    assert error == {
        "code": "TRY_AGAIN_LATER",
        "message": "retryAfter=2",
        "closeCode": 1013,
        "reason": "retryAfter=2",
        "retryAfter": 2.0,
    }
    assert await alice.disconnected() == "server disconnect"


async def test_expire_tokens(server: FakeServer, sio: OpenSio) -> None:
    old = server.issue_token("alice")
    alice = await sio(server, "alice")
    await server.expire_tokens()
    assert (await alice.expect("error"))["code"] == "TOKEN_EXPIRED"
    assert await alice.disconnected() == "server disconnect"
    stale = SioUser()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await stale.connect(server.sio_url, auth={"token": old})
    assert stale.connect_error == {"message": "TOKEN_EXPIRED"}
    fresh = await sio(server, "alice")
    assert await fresh.fails("token:refresh", old) == "TOKEN_EXPIRED"


async def test_disable_user_closes_and_refuses(
    server: FakeServer, sio: OpenSio, connect: Connect
) -> None:
    alice, raw_alice = await sio(server, "alice"), await connect(server, "alice")
    await server.disable_user("alice")
    error = await alice.expect("error")
    assert (error["code"], error["closeCode"]) == ("USER_DISABLED", 4003)
    assert await alice.disconnected() == "server disconnect"
    assert await raw_alice.closed() == (4003, "USER_DISABLED")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await open_sio(server, "alice")
    raw_again = await open_ws(server.ws_url, bearer(server.issue_token("alice")))
    assert await raw_again.closed() == (4003, "USER_DISABLED")
    assert raw_again.backlog == []  # no welcome
    await server.enable_user("alice")
    assert (await sio(server, "alice")).welcome["userId"] == "alice"


async def test_lose_next_acks(server: FakeServer, sio: OpenSio, connect: Connect) -> None:
    alice, bob = await sio(server, "alice"), await connect(server, "bob")
    await alice.join("lobby")
    await bob.join("lobby")
    await server.lose_next_acks(1)
    data = {"roomId": "lobby", "text": "a", "messageId": "lost"}
    with pytest.raises(socketio.exceptions.TimeoutError):
        await alice.call("chat:send", data, timeout=QUIET)
    assert (await alice.expect("chat:message"))["messageId"] == "lost"
    assert (await bob.expect("chat:message"))["messageId"] == "lost"
    assert server.counters["acks_lost"] == 1
    ack = await alice.ok("chat:send", data)
    assert ack["duplicate"] is True and ack["eventId"] == 1


async def test_duplicate_next_events(server: FakeServer, sio: OpenSio) -> None:
    alice = await sio(server, "alice")
    await alice.join("lobby")
    await server.duplicate_next_events(1)
    await alice.say("lobby", "twice")
    await alice.say("lobby", "once")
    texts = [(await alice.expect("chat:message"))["text"] for _ in range(3)]
    assert texts == ["twice", "twice", "once"]
    await alice.silent("chat:message")


async def test_set_latency_delays_events_and_acks_in_order(
    server: FakeServer, sio: OpenSio
) -> None:
    alice = await sio(server, "alice")
    await alice.join("lobby")
    await server.set_latency(200)
    started = time.monotonic()
    ack = await alice.say("lobby", "slow")
    assert time.monotonic() - started >= 0.2
    # The echo was queued before the ack, so it arrived first.
    assert [name for name, _ in alice.backlog] == ["chat:message"]
    assert alice.backlog[0][1]["eventId"] == ack["eventId"]
    await server.set_latency(0)
    await alice.ok("ping", {"ts": 3})


async def test_silent_engineio_peer_is_cut_after_ping_timeout(make_server: MakeServer) -> None:
    server = await make_server(ping_interval=0.05, ping_timeout=0.2)
    url = server.sio_url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
    async with websockets.connect(url, open_timeout=WAIT, ping_interval=None) as ws:
        assert str(await ws.recv()).startswith("0")  # OPEN
        await ws.send("40" + json.dumps({"token": server.issue_token("alice")}))
        assert str(await ws.recv()).startswith("40")  # CONNECT
        assert '"connected"' in str(await ws.recv())
        with pytest.raises(websockets.ConnectionClosed) as info:
            async with asyncio.timeout(WAIT):
                while True:  # read, never answer a PING
                    await ws.recv()
        assert info.value.rcvd is None  # cut, no close frame
    assert server.counters["heartbeat_timeouts"] == 1
    await wait_until(lambda: server.connection_count() == 0)


async def test_health_counts_both_kinds(server: FakeServer, sio: OpenSio, connect: Connect) -> None:
    await sio(server, "alice")
    await connect(server, "bob")
    async with aiohttp.ClientSession() as http, http.get(f"{server.http_url}/health") as resp:
        health = await resp.json()
    assert health["connections"] == 2
    assert health["counters"]["connections_opened"] == 2


async def test_graceful_stop_disconnects_and_leaves_no_task() -> None:
    before = asyncio.all_tasks()
    # Long timers: engine.io's per-socket ping task would outlive a sloppy stop.
    server = FakeServer(secret=SECRET, ping_interval=30.0, typing_timeout=30.0)
    await server.start()
    alice, bob = await open_sio(server, "alice"), await open_sio(server, "bob")
    await alice.join("lobby")
    await alice.ok("typing:start", "lobby")
    await server.stop()
    for user in (alice, bob):
        assert (await user.expect("error"))["closeCode"] == 1001
        assert await user.disconnected() == "server disconnect"
    assert server.connection_count() == 0
    # The clients' own tasks end once they saw the disconnect; the server's are gone.
    await wait_until(lambda: asyncio.all_tasks() - before <= {asyncio.current_task()})
    assert len(server._timers) == 0


async def test_stop_disconnects_long_polling_clients(make_server: MakeServer, sio: OpenSio) -> None:
    server = await make_server()
    poller = await sio(server, "alice", transports=["polling"])
    await server.stop()
    assert (await poller.expect("error"))["code"] == "GOING_AWAY"
    assert await poller.disconnected() == "server disconnect"


async def test_closing_a_client_that_stopped_polling_ends_its_session(server: FakeServer) -> None:
    """The server waits ``close_timeout`` for the poll that fetches its DISCONNECT, no more."""
    base = f"{server.sio_url}/socket.io/?EIO=4&transport=polling"
    async with aiohttp.ClientSession() as http:
        async with http.get(base) as response:
            sid = json.loads((await response.text())[1:])["sid"]
        url = f"{base}&sid={sid}"
        auth = json.dumps({"token": server.issue_token("alice")})
        async with http.post(url, data="40" + auth) as response:
            assert response.status == 200
        text = ""
        async with asyncio.timeout(WAIT):
            while '"connected"' not in text:
                async with http.get(url) as response:
                    text = await response.text()
        await server.disable_user("alice")  # and never poll again
        await wait_until(lambda: server.socket_count() == 0, server.config.close_timeout + 2)
        assert server.connection_count() == 0


async def test_a_server_disconnect_ends_with_the_engineio_close(server: FakeServer) -> None:
    """A long-polling client gets the DISCONNECT and then the CLOSE, never a refused poll.

    Like the reference engine.io server: the session serves polls until the client has
    fetched its CLOSE (a client that stops at the DISCONNECT made one more request, which
    got HTTP 400 "Invalid session" and an error in the server's log).
    """
    base = f"{server.sio_url}/socket.io/?EIO=4&transport=polling"
    async with aiohttp.ClientSession() as http:
        async with http.get(base) as response:
            sid = json.loads((await response.text())[1:])["sid"]
        url = f"{base}&sid={sid}"
        auth = json.dumps({"token": server.issue_token("alice")})
        async with http.post(url, data="40" + auth) as response:
            assert response.status == 200
        packets: list[str] = []
        async with asyncio.timeout(WAIT):
            while '"connected"' not in "".join(packets):
                async with http.get(url) as response:
                    packets = (await response.text()).split("\x1e")
            await server.disable_user("alice")
            packets = []
            while "1" not in packets:  # engine.io CLOSE
                async with http.get(url) as response:
                    assert response.status == 200, await response.text()
                    packets += (await response.text()).split("\x1e")
        assert packets.index("41") < packets.index("1")  # the DISCONNECT came first
        await wait_until(lambda: server.socket_count() == 0)


async def test_oversize_packet_cuts_the_connection(server: FakeServer, sio: OpenSio) -> None:
    alice = await sio(server, "alice")
    big = {"roomId": "lobby", "text": "x" * (server.config.max_message_size + 1), "messageId": "b"}
    await alice.client.emit("chat:send", big)
    assert await alice.disconnected() == "transport error"
    await wait_until(lambda: server.connection_count() == 0)
    assert server.counters["errors"] == 0


async def test_a_connect_that_arrives_after_its_session_closed_is_dropped_quietly(
    server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    # A restart (or drain) closes engine.io sessions not yet connected to the namespace;
    # a client whose Socket.IO CONNECT was on its way sends it into a session whose
    # disconnect has already run. python-socketio's _handle_connect then looked up the
    # session's environ and logged a KeyError ("message async handler error").
    url = f"{server.http_url.replace('http', 'ws', 1)}/socket.io/?EIO=4&transport=websocket"
    token = server.issue_token("alice")
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        opened = await ws.receive_str(timeout=WAIT)
        assert opened.startswith("0")
        closing = asyncio.create_task(server.close_all(1012, "service restart"))
        assert await ws.receive_str(timeout=WAIT) == "1"  # engine.io CLOSE: session gone
        await ws.send_str("40" + json.dumps({"token": token}))  # the CONNECT on its way
        await closing
        await wait_until(lambda: server.counters["handshakes_abandoned"] == 1, timeout=WAIT)
    assert server.connection_count() == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


async def test_frames_read_before_a_drop_are_not_carried_out(
    server: FakeServer, sio: OpenSio
) -> None:
    # As on /ws: after drop_connections nothing more of the connection is carried out,
    # not even frames aiohttp had already read. Committing them would only make acks
    # that can no longer be sent (the client resends, and gets duplicate acks).
    alice = await sio(server, "alice")
    await alice.join("lobby")
    endpoint = next(e for e in server._endpoints if isinstance(e, SioEndpoint))
    (engine_ws,) = endpoint._websockets.values()
    read_at = engine_ws._received
    await server.pause()
    await alice.client.emit("chat:send", {"roomId": "lobby", "text": "hi", "messageId": "m1"})
    # The frame is read (the reader then waits for the resume before handing it over).
    await wait_until(lambda: engine_ws._received > read_at, timeout=WAIT)
    await server.drop_connections()
    await server.resume()
    assert await alice.disconnected() == "transport error"
    await wait_until(lambda: engine_ws.done.is_set(), timeout=WAIT)
    assert server.counters["messages_committed"] == 0
    assert server.room_events("lobby") == []
