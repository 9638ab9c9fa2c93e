"""bytes travel where the codec carries them: MessagePack, and Socket.IO attachments."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import socketio
from aiohttp import web

from fake_server import FakeServer
from rtclient import Backoff, Client

BLOB = bytes(range(256))
FAST = Backoff(base=0.01, cap=0.1)


@pytest.mark.parametrize("transport", ["websocket", "aiohttp"])
async def test_request_carries_bytes_under_msgpack_and_refuses_them_under_json(
    server: FakeServer, transport: str
) -> None:
    packed = Client(
        server.ws_url,
        token=server.issue_token("p"),
        transport=transport,
        codec="msgpack",  # type: ignore[arg-type]
    )
    plain = Client(server.ws_url, token=server.issue_token("j"), transport=transport)  # type: ignore[arg-type]
    async with packed, plain:
        reply = await packed.request("ping", {"blob": BLOB})
        assert isinstance(reply, dict)
        with pytest.raises(TypeError):
            await plain.request("ping", {"blob": BLOB})


@pytest.fixture(params=["msgpack", "default"])
async def echo_server(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, str]]:
    """A python-socketio server that echoes, with the MessagePack or the default serializer."""
    serializer = str(request.param)
    sio = socketio.AsyncServer(async_mode="aiohttp", serializer=serializer)
    app = web.Application()
    sio.attach(app)

    @sio.on("echo")
    async def echo(sid: str, data: Any) -> Any:
        return data

    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", "msgpack" if serializer == "msgpack" else "json"
    await runner.cleanup()


async def test_emit_and_call_carry_bytes_over_socketio(echo_server: tuple[str, str]) -> None:
    url, codec = echo_server
    client = Client(
        url, transport="socketio", protocol="generic", codec=codec, backoff=FAST, token="t"
    )
    async with client:
        assert await client.call("echo", BLOB) == BLOB
        reply = await client.emit("echo", {"blob": BLOB})
        assert reply["blob"] == BLOB and "messageId" in reply
        with pytest.raises(TypeError):
            await client.emit("echo", {"not": object()})
