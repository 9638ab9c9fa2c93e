"""HostileServer itself, seen from a plain ``websockets`` client: it does what it says."""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from rtclient.testing import HostileConnection, HostileServer

from ..leaks import ACCEPT_STEPS, connect_mid_accept, http_get, no_resource_warnings


async def test_default_welcome_then_contract() -> None:
    async with HostileServer(user_id="bob") as srv:
        async with connect(srv.url, subprotocols=["rtclient.v1.json"]) as ws:
            welcome = json.loads(await ws.recv())
            assert (welcome["type"], welcome["payload"]["userId"]) == ("connected", "bob")
            assert ws.subprotocol == "rtclient.v1.json"
            await ws.send(json.dumps({"type": "room:join", "id": "j", "payload": {"roomId": "r"}}))
            ack = json.loads(await ws.recv())
            assert ack == {
                "type": "ack",
                "id": "j",
                "payload": {
                    "success": True,
                    "roomId": "r",
                    "members": ["bob"],
                    "epoch": "e1",
                    "lastEventId": 0,
                },
            }
        assert [r.type for r in srv.requests] == ["room:join"]


async def test_refuse_sends_status_and_headers_then_default_again() -> None:
    async with HostileServer() as srv:
        srv.refuse(429, headers={"Retry-After": "inf"}, body="slow down")
        with pytest.raises(InvalidStatus) as refused:
            await connect(srv.url)
        response = refused.value.response
        assert (response.status_code, response.headers["Retry-After"]) == (429, "inf")
        assert response.body == b"slow down"
        async with connect(srv.url) as ws:  # times=1: the next one is upgraded
            assert json.loads(await ws.recv())["type"] == "connected"


@pytest.mark.parametrize(
    ("close", "code"), [((None,), 1005), ((3999, "x"), 3999), ((1013, "retryAfter=1"), 1013)]
)
async def test_close_sends_exactly_that_code(close: tuple[object, ...], code: int) -> None:
    async with HostileServer() as srv:
        srv.after_welcome(lambda conn: conn.close(*close))  # type: ignore[arg-type]
        async with connect(srv.url) as ws:
            await ws.recv()
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == code


async def test_drop_sends_no_close_frame() -> None:
    async with HostileServer() as srv:
        srv.after_welcome(lambda conn: conn.drop())
        async with connect(srv.url) as ws:
            await ws.recv()
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is None


async def test_nth_hook_and_counts() -> None:
    async with HostileServer() as srv:
        srv.on("ping", lambda conn, req: conn.ack(req, weird=req.n), nth=2)
        async with connect(srv.url) as ws:
            await ws.recv()
            answers = []
            for i in range(3):
                await ws.send(json.dumps({"type": "ping", "id": str(i), "payload": {"ts": i}}))
                answers.append(json.loads(await ws.recv())["payload"])
        assert [a.get("weird") for a in answers] == [None, 2, None]
        assert srv.count("ping") == 3


async def test_a_script_that_raises_fails_the_server_exit() -> None:
    async def broken(conn: HostileConnection) -> None:
        raise ValueError("bug in my script")

    with pytest.raises(ValueError, match="bug in my script"):
        async with HostileServer() as srv:
            srv.script(broken)
            async with connect(srv.url) as ws:
                with pytest.raises(ConnectionClosed):
                    await ws.recv()


@pytest.mark.parametrize("steps", ACCEPT_STEPS)
async def test_a_connection_accepted_as_the_server_exits_is_cut_not_leaked(steps: int) -> None:
    # asyncio builds an accepted connection's transport an iteration later: a close() in
    # between dropped it unclosed (fake_server.listening), and its client waited.
    with no_resource_warnings():
        async with HostileServer() as srv:
            sock = await connect_mid_accept(srv.host, srv.port, steps)
        assert await http_get(sock) == b""  # cut: the server has gone
