"""FakeServer.drain(): refuse newcomers, tell clients, close 1012 behind the acks, stop."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import websockets
from websockets.exceptions import ConnectionClosed

from .conftest import MakeServer
from .helpers import WAIT, bearer

PING = json.dumps({"type": "ping", "id": "p", "payload": {"ts": 1}})


async def _flood_until_closed(ws: Any) -> tuple[list[dict[str, Any]], ConnectionClosed]:
    """Keep sending while reading everything; return what came and how it ended."""
    got: list[dict[str, Any]] = []

    async def flood() -> None:
        try:
            while True:
                await ws.send(PING)
                await asyncio.sleep(0)
        except ConnectionClosed:
            return

    sender = asyncio.create_task(flood())
    try:
        async with asyncio.timeout(WAIT):
            while True:
                try:
                    got.append(json.loads(await ws.recv()))
                except ConnectionClosed as closed:
                    return got, closed
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)


async def test_a_client_that_keeps_sending_gets_the_notice_and_1012_behind_its_acks(
    make_server: MakeServer,
) -> None:
    """The reset this once caused (aiohttp's close beside a waiting receive()) shows
    across processes: tests/cli/test_serve_drain.py; here, the order of what arrives."""
    server = await make_server()
    token = server.issue_token("alice")
    async with websockets.connect(server.ws_url, additional_headers=bearer(token)) as ws:
        assert json.loads(await ws.recv())["type"] == "connected"
        for _ in range(20):  # the flood is under way before the drain
            await ws.send(PING)
        drain = asyncio.create_task(server.drain(timeout=2.0, retry_after=0.5))
        got, closed = await _flood_until_closed(ws)
        assert await drain is True
    assert closed.rcvd is not None, "no close frame: the connection was reset"
    assert (closed.rcvd.code, closed.rcvd.reason) == (1012, "retryAfter=0.5")
    notices = [f for f in got if f["type"] == "server:draining"]
    assert [n["payload"] for n in notices] == [{"retryAfter": 0.5, "reason": "draining"}]
    # Every ping the server carried out was answered before the close.
    answered = sum(1 for f in got if f["type"] == "ack")
    assert answered == sum(1 for f in got if f["type"] == "pong")


async def test_newcomers_get_503_with_retry_after_while_it_drains(
    make_server: MakeServer,
) -> None:
    server = await make_server(close_timeout=5.0)
    token = server.issue_token("alice")
    # A client that never answers the close keeps the drain waiting (bounded).
    ws = await websockets.connect(server.ws_url, additional_headers=bearer(token))
    try:
        assert json.loads(await ws.recv())["type"] == "connected"
        ws.transport.pause_reading()  # it reads nothing more: no close reply
        drain = asyncio.create_task(server.drain(timeout=1.0, retry_after=2.0))
        async with aiohttp.ClientSession() as http:
            async with asyncio.timeout(WAIT):
                while True:
                    async with http.get(f"{server.http_url}/health") as health:
                        if (await health.json())["status"] == "draining":
                            break
            async with http.get(server.ws_url.replace("ws://", "http://")) as refused:
                assert refused.status == 503
                assert refused.headers["Retry-After"] == "2"
            async with http.get(f"{server.http_url}/socket.io/?EIO=4&transport=polling") as sio:
                assert sio.status == 503
        assert await drain is False  # the silent client was cut after the timeout
    finally:
        ws.transport.abort()
    assert server.counters["drains"] == 1


async def test_a_spread_drain_closes_the_clients_one_after_another(
    make_server: MakeServer,
) -> None:
    server = await make_server()
    clients = [
        await websockets.connect(
            server.ws_url, additional_headers=bearer(server.issue_token(f"u{i}"))
        )
        for i in range(3)
    ]
    loop = asyncio.get_running_loop()

    async def closed_at(ws: Any) -> float:
        assert json.loads(await ws.recv())["type"] == "connected"
        try:
            while True:
                await ws.recv()
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 1012
        return loop.time()

    waiting = [asyncio.create_task(closed_at(ws)) for ws in clients]
    started = loop.time()
    assert await server.drain(timeout=2.0, spread=0.6) is True
    times = sorted(await asyncio.gather(*waiting))
    # Lower bounds only: 0.2 s apart by design (a loaded machine only adds to it).
    assert times[0] - started >= 0.2 and times[2] - times[0] >= 0.35
