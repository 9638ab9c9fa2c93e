"""Odd close codes, at odd moments: retried or fatal as documented, nothing lost or doubled.

README ("Reconnects are polite", docs/protocol.md "Close codes"): 1000/1001/1005/1006/
1011/1012/1013 and codes the client cannot make sense of are retried with backoff;
4001 / 4003 / protocol-violation codes stop the client with a typed error; 4002 gets a
fresh token. Over Socket.IO the same codes arrive as ``error {closeCode, reason}``
before the disconnect. A message whose ack was lost to the close is sent again and
deduplicated: one copy in the log, one event delivered, one ack.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rtclient import (
    ClientClosed,
    ConnectionState,
    Forbidden,
    ProtocolError,
    TokenExpired,
    Unauthorized,
)
from rtclient.hints import DEFAULT_MAX_SERVER_DELAY as MAX_RETRY_AFTER
from rtclient.testing import HostileConnection, HostileServer, Request, wait_until

from .conftest import ALL, MakeClient

ITEM_2 = "issue 13 item 2 (fixed on branch i13a)"

RETRIED: dict[str, tuple[int | None, str | bytes] | None] = {
    "1000": (1000, "bye"),
    "1001": (1001, "going away"),
    "1011": (1011, "internal"),
    "1012": (1012, "service restart"),
    "1013-no-hint": (1013, "busy"),
    "1005-no-status": (None, ""),
    "1006-reset": None,
    "3500-unknown": (3500, "who knows"),
    "999-invalid": (999, "below range"),
    "1004-reserved": (1004, "reserved"),
    "5000-invalid": (5000, "above range"),
    "reason-not-utf8": (1012, b"\xff\xfe\xfd"),
    "reason-control-chars": (1012, "\x00\x1b[31m\r\n"),
}


def lose_ack_then(close: tuple[int | None, str | bytes] | None) -> Any:
    """A chat:send hook: commit the message, then close instead of acknowledging it."""

    async def hook(conn: HostileConnection, req: Request) -> None:
        await conn.server.contract.commit(req)
        if close is None:
            conn.drop()
        else:
            await conn.close(*close)

    return hook


@pytest.mark.parametrize("transport", ALL)
@pytest.mark.parametrize("close", RETRIED.values(), ids=RETRIED.keys())
async def test_close_after_commit_is_retried_and_the_message_lands_once(
    srv: HostileServer,
    make_client: MakeClient,
    transport: str,
    close: tuple[int | None, str | bytes] | None,
) -> None:
    client, seen = await make_client(transport, rooms=("lobby",))
    srv.on("chat:send", lose_ack_then(close), nth=1)
    ack = await asyncio.wait_for(client.send("lobby", "exactly once"), 5)
    assert (ack.event_id, ack.duplicate) == (1, True)
    await wait_until(lambda: seen.ids() == [1], timeout=3)
    assert [e["text"] for e in srv.contract.logs["lobby"]] == ["exactly once"]
    assert len(srv.connections) == 2
    assert client.state is ConnectionState.CONNECTED
    assert client.stats()["reconnects"] == 1


FATAL: dict[str, tuple[int, str, type[Exception]]] = {
    "4001": (4001, "INVALID_TOKEN", Unauthorized),
    "4003": (4003, "FORBIDDEN", Forbidden),
    "1002": (1002, "protocol error", ProtocolError),
    "1003": (1003, "unsupported", ProtocolError),
    "1008": (1008, "policy", ProtocolError),
    "4000": (4000, "app", ProtocolError),
    "4999": (4999, "app", ProtocolError),
}


@pytest.mark.parametrize("transport", ALL)
@pytest.mark.parametrize("close", FATAL.values(), ids=FATAL.keys())
async def test_fatal_close_fails_pending_sends_with_the_typed_error(
    srv: HostileServer,
    make_client: MakeClient,
    transport: str,
    close: tuple[int, str, type[Exception]],
) -> None:
    code, reason, error = close
    client, _ = await make_client(transport, rooms=("lobby",))
    srv.on("chat:send", lambda conn, req: conn.close(code, reason))
    with pytest.raises(error):
        await asyncio.wait_for(client.send("lobby", "doomed"), 5)
    await client.wait_for(ConnectionState.CLOSED, timeout=3)
    assert len(srv.handshakes) == 1  # no retry of a fatal close
    with pytest.raises(ClientClosed) as closed:
        client.send_nowait("lobby", "after the end")
    assert isinstance(closed.value.__cause__, error)


@pytest.mark.parametrize("between", ["event", "ack"])
async def test_socketio_close_code_holds_when_traffic_comes_between_error_and_disconnect(
    srv: HostileServer, make_client: MakeClient, between: str
) -> None:
    """``error {closeCode}``, then an event or an ack, then the server's DISCONNECT.

    A python-socketio server emits the error and disconnects in two awaits; another
    handler's emit or ack can land between them (the binding promises no more). The
    disconnect is still the one that error announced: 4003 is fatal, as on raw.
    """
    client, _ = await make_client("socketio", rooms=("lobby",))

    async def forbid(conn: HostileConnection, req: Request) -> None:
        error = {"code": "FORBIDDEN", "message": "no", "closeCode": 4003, "reason": "FORBIDDEN"}
        await conn.emit("error", error)
        if between == "ack":
            await conn.default(req)
        else:
            await conn.emit("chat:message", srv.contract.append("lobby", "someone else"))
        await conn.send_text("41")  # the server's DISCONNECT

    srv.on("chat:send", forbid)
    client.send_nowait("lobby", "the last one")
    await client.wait_for(ConnectionState.CLOSED, timeout=3)
    with pytest.raises(ClientClosed) as closed:
        client.send_nowait("lobby", "after the end")
    assert isinstance(closed.value.__cause__, Forbidden)
    assert len(srv.handshakes) == 1


@pytest.mark.parametrize("transport", ALL)
async def test_fatal_close_before_welcome_stops_connect(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    async def refuse(conn: HostileConnection) -> None:
        await conn.open()  # Socket.IO: the namespace is connected, then the error
        await conn.close(4001, "INVALID_TOKEN")

    srv.script(refuse)
    client, _ = await make_client(transport, connect=False)
    with pytest.raises(Unauthorized):
        async with asyncio.timeout(3):
            await client.connect()
    assert len(srv.handshakes) == 1


@pytest.mark.parametrize("transport", ALL)
async def test_4002_after_every_welcome_is_not_a_zero_delay_storm(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    srv.after_welcome(lambda conn: conn.close(4002, "TOKEN_EXPIRED"))
    client, seen = await make_client(transport, connect=False)
    await client.connect(wait=False)
    await wait_until(
        lambda: len(seen.delays()) >= 10 or client.state is ConnectionState.CLOSED, timeout=5
    )
    if client.state is ConnectionState.CLOSED:
        with pytest.raises(TokenExpired):
            await client.wait_for(ConnectionState.CONNECTED)
    else:
        assert sum(seen.delays()[:10]) > 0.01  # backoff: not ten attempts at once


@pytest.mark.parametrize("transport", ALL)
@pytest.mark.parametrize(
    "hint",
    [
        "86400",
        "999999.5",
        "1e308",  # read as 1 s today (the parser stops at the "e"): capped either way
        "inf",  # not a number to today's parser: ignored
    ],
)
async def test_1013_with_an_absurd_retry_after_is_capped(
    srv: HostileServer, make_client: MakeClient, transport: str, hint: str
) -> None:
    srv.after_welcome(lambda conn: conn.close(1013, f"retryAfter={hint}"), times=1)
    client, seen = await make_client(transport, connect=False)
    await client.connect(wait=False)
    await wait_until(lambda: seen.delays(), timeout=3)
    assert seen.delays()[0] <= MAX_RETRY_AFTER


@pytest.mark.parametrize("transport", ALL)
async def test_1013_with_a_sane_retry_after_is_respected(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    srv.after_welcome(lambda conn: conn.close(1013, "retryAfter=0.25"), times=1)
    client, seen = await make_client(transport, connect=False)
    async with asyncio.timeout(5):
        await client.connect()
    await client.wait_for(ConnectionState.RECONNECTING, timeout=3)
    await client.wait_for(ConnectionState.CONNECTED, timeout=3)
    assert seen.delays()[0] >= 0.25


@pytest.mark.parametrize("transport", ALL)
@pytest.mark.parametrize("hint", ["retryAfter=soon", "retryAfter=-3", "retryAfter="])
async def test_1013_with_a_garbage_retry_after_backs_off_as_usual(
    srv: HostileServer, make_client: MakeClient, transport: str, hint: str
) -> None:
    srv.after_welcome(lambda conn: conn.close(1013, hint), times=1)
    client, seen = await make_client(transport, connect=False)
    async with asyncio.timeout(5):
        await client.connect()
    await client.wait_for(ConnectionState.RECONNECTING, timeout=3)
    await client.wait_for(ConnectionState.CONNECTED, timeout=3)
    assert 0 <= seen.delays()[0] <= 0.2


@pytest.mark.parametrize("transport", ALL)
async def test_one_fatal_close_with_three_rooms_is_one_error(
    srv: HostileServer, make_client: MakeClient, transport: str
) -> None:
    client, seen = await make_client(transport, rooms=("a", "b", "c"))
    srv.after_welcome(lambda conn: conn.close(4001, "INVALID_TOKEN"))
    srv.connections[0].drop()
    await client.wait_for(ConnectionState.CLOSED, timeout=3)
    assert seen.codes().count("Unauthorized") <= 1


async def test_socketio_error_with_close_code_but_no_disconnect_is_not_remembered(
    srv: HostileServer, make_client: MakeClient
) -> None:
    """An ``error`` carrying a closeCode that no disconnect follows must not decide later.

    A server that sends ``error {closeCode: 4001}`` and keeps the connection up, then
    loses the link for another reason: that loss is a 1006 (retry), not a 4001.
    """
    client, seen = await make_client("socketio", rooms=("lobby",))
    conn = srv.connections[-1]
    await conn.emit("error", {"code": "X", "closeCode": 4001, "reason": "INVALID_TOKEN"})
    await conn.emit("chat:message", srv.contract.append("lobby", "still here"))
    await wait_until(lambda: seen.ids() == [1], timeout=3)  # the connection lives on
    conn.drop()
    await wait_until(lambda: len(srv.connections) == 2, timeout=1)
    await client.wait_for(ConnectionState.CONNECTED, timeout=3)
