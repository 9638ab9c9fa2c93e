"""Handshake oddities: what the server answers instead of (or around) ``101 Switching``.

README ("Reconnects are polite", docs/protocol.md "Close codes"): 503 / 429 / 5xx are
retried with backoff and a server's ``Retry-After`` is respected but capped; 401 and
403 stop the client with ``Unauthorized`` / ``Forbidden``; anything that shows the peer
does not speak the protocol stops it with ``ProtocolError`` — in one attempt, never a
loop.
"""

from __future__ import annotations

import asyncio
import gc
import warnings

import pytest

from rtclient import Client, ConnectionState, Forbidden, ProtocolError, Unauthorized
from rtclient.errors import TransportError
from rtclient.hints import DEFAULT_MAX_SERVER_DELAY as MAX_RETRY_AFTER
from rtclient.testing import HostileConnection, HostileServer, wait_until
from rtclient.transports import SocketIOTransport

from .conftest import ALL, RAW, MakeClient

ITEM_2 = "issue 13 item 2 (fixed on branch i13a)"


async def _connect(client: Client, timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        await client.connect()


@pytest.mark.parametrize("transport", ALL)
@pytest.mark.parametrize(
    ("status", "error"), [(401, Unauthorized), (403, Forbidden), (404, ProtocolError)]
)
async def test_refusal_status_is_fatal_in_one_attempt(
    srv: HostileServer, make_client: MakeClient, transport: str, status: int, error: type
) -> None:
    srv.refuse(status, times=None)
    client, _ = await make_client(transport, connect=False)
    with pytest.raises(error, match=f"HTTP {status}"):
        await _connect(client)
    assert len(srv.handshakes) == 1
    assert client.state is ConnectionState.CLOSED


@pytest.mark.parametrize("transport", ALL)
@pytest.mark.parametrize(
    "retry_after", ["soon-ish", "-5", "nan", ""], ids=["garbage", "negative", "nan", "empty"]
)
async def test_503_with_a_useless_retry_after_backs_off_as_usual(
    srv: HostileServer, make_client: MakeClient, transport: str, retry_after: str
) -> None:
    srv.refuse(503, headers={"Retry-After": retry_after}, times=2)
    _client, seen = await make_client(transport, rooms=("lobby",))
    assert len(srv.handshakes) == 3
    delays = seen.delays()
    assert len(delays) == 2
    assert all(0 <= d <= 0.2 for d in delays)  # the policy's own, at most its cap


@pytest.mark.parametrize("transport", ALL)
@pytest.mark.parametrize("status", [500, 502, 503, 408])
async def test_server_errors_are_retried_until_accepted(
    srv: HostileServer, make_client: MakeClient, transport: str, status: int
) -> None:
    srv.refuse(status, body="<html>busy</html>", times=3)
    client, _ = await make_client(transport, rooms=("lobby",))
    ack = await client.send("lobby", "made it")
    assert ack.event_id == 1
    assert len(srv.handshakes) == 4


@pytest.mark.parametrize("transport", ALL)
@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("retry_after", ["999999", "inf", "1e308"])
async def test_absurd_retry_after_is_capped(
    srv: HostileServer, make_client: MakeClient, transport: str, status: int, retry_after: str
) -> None:
    srv.refuse(status, headers={"Retry-After": retry_after})
    client, seen = await make_client(transport, connect=False)
    await client.connect(wait=False)
    await wait_until(lambda: seen.delays(), timeout=3)
    assert seen.delays()[0] <= MAX_RETRY_AFTER


@pytest.mark.parametrize("transport", ["websocket"])
async def test_unoffered_subprotocol_is_a_protocol_error(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    srv.accept(subprotocol="evil.v9", times=None)
    client, _ = await make_client(transport, connect=False)
    with pytest.raises(ProtocolError, match="subprotocol"):
        await _connect(client)
    assert len(srv.handshakes) == 1


async def test_unoffered_subprotocol_is_a_protocol_error_on_aiohttp(
    srv: HostileServer, make_client: MakeClient
) -> None:
    srv.accept(subprotocol="evil.v9", times=None)
    client, _ = await make_client("aiohttp", connect=False)
    with pytest.raises(ProtocolError):
        await _connect(client)


@pytest.mark.parametrize("transport", RAW)
async def test_no_subprotocol_chosen_means_json(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    srv.accept(subprotocol=None, times=None)
    client, _ = await make_client(transport, rooms=("lobby",))
    assert srv.handshakes[0].subprotocols == ["rtclient.v1.json"]
    assert (await client.send("lobby", "json it is")).event_id == 1


@pytest.mark.parametrize("transport", ALL)
@pytest.mark.parametrize("status", [200, 204])
async def test_a_success_status_that_is_not_101_is_a_protocol_error(
    srv: HostileServer, make_client: MakeClient, transport: str, status: int
) -> None:
    srv.refuse(status, body="hello" if status == 200 else "", times=None)
    client, _ = await make_client(transport, connect=False)
    with pytest.raises(ProtocolError, match=f"HTTP {status}"):
        await _connect(client)
    assert len(srv.handshakes) == 1


async def test_redirect_loop_stops_with_a_protocol_error_on_websocket(
    srv: HostileServer, make_client: MakeClient
) -> None:
    client, _ = await make_client("websocket", connect=False)
    srv.refuse(302, headers={"Location": srv.url}, times=None)
    with pytest.raises(ProtocolError, match="redirects"):
        await _connect(client)
    assert len(srv.handshakes) <= 11  # websockets follows 10, once


@pytest.mark.parametrize("transport", ["aiohttp", "socketio"])
async def test_redirect_loop_stops_with_a_protocol_error(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    client, _ = await make_client(transport, connect=False)
    srv.refuse(302, headers={"Location": srv.url_for(transport)}, times=None)
    with pytest.raises(ProtocolError, match="redirect"):
        await _connect(client, timeout=1.0)
    assert len(srv.handshakes) <= 11  # one attempt: aiohttp follows 10 redirects at most


async def test_redirect_loop_stops_with_a_protocol_error_on_socketio_long_polling(
    srv: HostileServer, make_client: MakeClient
) -> None:
    """engine.io's polling requests turn aiohttp's exception into a string: no chain."""
    polling = SocketIOTransport(transports=("polling",))
    client, _ = await make_client(polling, connect=False)
    srv.refuse(302, headers={"Location": srv.url_for("socketio")}, times=None)
    with pytest.raises(ProtocolError, match="redirect"):
        await _connect(client, timeout=1.0)
    assert len(srv.handshakes) <= 11


@pytest.mark.parametrize("transport", RAW)
async def test_garbage_status_line_is_a_protocol_error(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    srv.respond_raw(b"SMTP ready\r\n\r\n", times=None)
    client, _ = await make_client(transport, connect=False)
    with pytest.raises(ProtocolError):
        await _connect(client)
    assert len(srv.handshakes) == 1


@pytest.mark.parametrize("transport", RAW)
async def test_websocket_bytes_instead_of_the_response_are_retried(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    # A close frame (1012) where the 101 response belongs: what a client sees when the
    # response was lost on the way (a proxy that swallowed it, as the chaos lab's
    # blackhole does) and the server then closed. Not a foreign protocol: retried.
    srv.respond_raw(b"\x88\x02\x03\xf4", times=1)
    client, _ = await make_client(transport, rooms=("lobby",))
    assert client.state is ConnectionState.CONNECTED
    assert len(srv.handshakes) == 2


@pytest.mark.parametrize("transport", ALL)
async def test_connection_closed_before_any_response_is_retried(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    srv.respond_raw(b"", times=2)
    client, _ = await make_client(transport, rooms=("lobby",))
    # aiohttp tries a GET whose connection closed unanswered once more by itself.
    assert len(srv.handshakes) == 3
    assert 2 <= client.stats()["attempts"] <= 3


@pytest.mark.parametrize("transport", ALL)
async def test_handshake_that_never_answers_times_out_and_is_retried(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    srv.stall_handshake(times=1)
    _client, seen = await make_client(transport, rooms=("lobby",), connect_timeout=0.3)
    assert len(srv.handshakes) == 2
    assert len(seen.delays()) == 1


@pytest.mark.parametrize("transport", ALL)
async def test_accept_then_no_welcome_times_out_and_backs_off(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    srv.script(lambda conn: conn.stall(), times=3)
    client, seen = await make_client(transport, rooms=("lobby",), connect_timeout=0.2)
    assert len(srv.handshakes) == 4
    assert len(seen.delays()) == 3
    assert client.stats()["reconnects"] == 0  # never welcomed: not a reconnect


@pytest.mark.parametrize("transport", ALL)
async def test_welcome_with_garbage_fields_still_connects(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    async def odd_welcome(conn: HostileConnection) -> None:
        await conn.welcome(userId=7, features="sync", limits=[1], epoch=None)

    srv.script(odd_welcome)
    client, _ = await make_client(transport, rooms=("lobby",))
    assert client.user_id is None
    assert (await client.send("lobby", "still fine")).event_id == 1


@pytest.mark.parametrize(
    "first",
    [None, "hello", '0{"sid": "x"}', "0not json"],
    ids=["close-at-once", "not-a-packet", "open-without-fields", "open-not-json"],
)
async def test_socketio_bad_engineio_open_is_retried_not_crashed(
    srv: HostileServer, make_client: MakeClient, first: str | None
) -> None:
    async def script(conn: HostileConnection) -> None:
        if first is None:
            await conn.close(1000)
        else:
            await conn.send_text(first)
            await conn.stall()

    srv.script(script, times=1)
    client, _ = await make_client("socketio", connect=False, connect_timeout=0.3)
    try:
        await _connect(client)
    finally:
        try:
            await client.close()
        finally:
            gc.collect()  # what the crash leaked is found here, not in a later test
    assert len(srv.handshakes) == 2


@pytest.mark.parametrize(
    "first",
    [None, "hello", '0{"sid": "x"}', "0not json", "6"],
    ids=["close-at-once", "not-a-packet", "open-without-fields", "open-not-json", "noop"],
)
async def test_socketio_failed_engineio_handshake_releases_its_connection(
    srv: HostileServer, first: str | None
) -> None:
    """Hostile finding H7: engine.io dropped the upgraded response unclosed; the GC warned."""

    async def script(conn: HostileConnection) -> None:
        if first is None:
            await conn.close(1000)
        else:
            await conn.send_text(first)
            await conn.stall()

    srv.script(script, times=1)
    # aiohttp says "Unclosed response" in debug mode only (else, depending on the order
    # the GC finalises a cycle in, "Unclosed connection" or nothing), when the response
    # is freed: watched from before the attempt.
    loop = asyncio.get_running_loop()
    debug = loop.get_debug()
    loop.set_debug(True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(TransportError):
                await SocketIOTransport().connect(srv.sio_url, token="t", open_timeout=0.3)
            gc.collect()
    finally:
        loop.set_debug(debug)
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []


async def test_socketio_noop_before_engineio_open_is_retried(
    srv: HostileServer, make_client: MakeClient
) -> None:
    async def script(conn: HostileConnection) -> None:
        await conn.send_text("6")
        await conn.stall()

    srv.script(script, times=1)
    await make_client("socketio", rooms=("lobby",), connect_timeout=0.3)
    assert len(srv.handshakes) == 2
