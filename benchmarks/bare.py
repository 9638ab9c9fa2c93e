"""The baselines: what a user would write without rtclient, one worker kind each.

- bare websockets: ``send_ws`` (``window`` requests outstanding, acks matched by id),
  ``recv_ws`` (``async for`` + ``json.loads``), ``idle_ws``;
- bare aiohttp (no compression): ``send_aio`` (the same exchange as ``send_ws``),
  ``recv_aio``;
- python-socketio: ``send_sio`` (``await call()``, window 1), ``recv_sio`` (a handler).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import socketio
import websockets
from websockets.asyncio.client import ClientConnection

from .harness import Token
from .measure import ROOM, RUN, WARMUP, Counter, idle, receive, result, timer
from .server import TEXT
from .spec import WorkerResult, WorkerSpec

__all__ = ["idle_ws", "recv_aio", "recv_sio", "recv_ws", "send_aio", "send_sio", "send_ws"]


def extensions(ws: ClientConnection | None) -> str:
    """The WebSocket extensions a websockets connection negotiated."""
    if ws is None or ws.response is None:
        return "?"
    return ws.response.headers.get("Sec-WebSocket-Extensions", "") or "none"


async def _send_window(
    send: Callable[[str], Awaitable[None]],
    recv: Callable[[], Awaitable[str | bytes]],
    ids: Iterator[str],
    window: int,
    count: int,
) -> None:
    """``count`` chat:send with an id, ``window`` outstanding, acks matched by id."""
    payload = {"roomId": ROOM, "text": TEXT}
    pending: set[str] = set()
    sent = 0
    while sent < min(window, count):
        message_id = next(ids)
        pending.add(message_id)
        await send(json.dumps({"type": "chat:send", "id": message_id, "payload": payload}))
        sent += 1
    while pending:
        frame = json.loads(await recv())
        if frame.get("type") != "ack":
            continue  # our own chat:message echo
        pending.discard(frame["id"])
        if sent < count:
            message_id = next(ids)
            pending.add(message_id)
            await send(json.dumps({"type": "chat:send", "id": message_id, "payload": payload}))
            sent += 1


# -- websockets ---------------------------------------------------------------------------


async def _ws_connect(spec: WorkerSpec, user: str) -> ClientConnection:
    headers = {"Authorization": f"Bearer {Token()(user)}"}
    compression = "deflate" if spec.get("compression", True) else None
    ws = await websockets.connect(
        spec["url"], additional_headers=headers, ping_interval=None, compression=compression
    )
    welcome = json.loads(await ws.recv())
    assert welcome["type"] == "connected", welcome
    return ws


async def _ws_request(ws: ClientConnection, type_: str, payload: dict[str, Any]) -> Any:
    request_id = f"r-{time.monotonic_ns()}"
    await ws.send(json.dumps({"type": type_, "id": request_id, "payload": payload}))
    while True:
        frame = json.loads(await ws.recv())
        if frame.get("type") == "ack" and frame.get("id") == request_id:
            return frame["payload"]


async def send_ws(spec: WorkerSpec) -> WorkerResult:
    """Bare websockets: chat:send with an id, match acks by id, ``window`` outstanding."""
    n, window = spec["n"], spec["window"]
    ws = await _ws_connect(spec, "sender")
    try:
        await _ws_request(ws, "room:join", {"roomId": ROOM})
        ids = (f"m-{RUN}-{i}" for i in itertools.count())
        await _send_window(ws.send, ws.recv, ids, window, WARMUP)
        start = timer()
        await _send_window(ws.send, ws.recv, ids, window, n)
        got = result(n, start)
        got["extensions"] = extensions(ws)
        return got
    finally:
        await ws.close()


async def recv_ws(spec: WorkerSpec) -> WorkerResult:
    """Bare websockets: one receive loop, ``json.loads`` each frame."""
    ws = await _ws_connect(spec, "receiver")
    await _ws_request(ws, "room:join", {"roomId": ROOM})
    current: list[Counter] = []

    async def loop() -> None:
        async for frame in ws:
            message = json.loads(frame)
            if message["type"] == "chat:message":
                current[-1].hit()

    reader = asyncio.create_task(loop())
    try:
        got = await receive(spec, current)
        got["extensions"] = extensions(ws)
        return got
    finally:
        await ws.close()
        reader.cancel()


async def idle_ws(spec: WorkerSpec) -> WorkerResult:
    sockets: list[ClientConnection] = []
    readers: list[asyncio.Task[None]] = []

    async def drain(ws: ClientConnection) -> None:
        async for frame in ws:
            json.loads(frame)

    async def connect_one(i: int) -> ClientConnection:
        ws = await _ws_connect(spec, f"idle-{i}")
        await _ws_request(ws, "room:join", {"roomId": f"idle-{i}"})
        sockets.append(ws)
        readers.append(asyncio.create_task(drain(ws)))
        return ws

    try:
        return await idle(spec, connect_one)
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


# -- aiohttp (the transport that could replace websockets) --------------------------------


async def _aio_connect(
    spec: WorkerSpec, user: str
) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]:
    session = aiohttp.ClientSession()
    headers = {"Authorization": f"Bearer {Token()(user)}"}
    ws = await session.ws_connect(spec["url"], headers=headers, autoping=True)
    welcome = json.loads(await ws.receive_str())
    assert welcome["type"] == "connected", welcome
    await ws.send_str(json.dumps({"type": "room:join", "id": "join", "payload": {"roomId": ROOM}}))
    while True:
        frame = json.loads(await ws.receive_str())
        if frame.get("type") == "ack" and frame.get("id") == "join":
            return session, ws


async def send_aio(spec: WorkerSpec) -> WorkerResult:
    """Bare aiohttp client, the same exchange as :func:`send_ws` (no compression)."""
    n, window = spec["n"], spec["window"]
    session, ws = await _aio_connect(spec, "sender")
    try:
        ids = (f"a-{RUN}-{i}" for i in itertools.count())
        await _send_window(ws.send_str, ws.receive_str, ids, window, WARMUP)
        start = timer()
        await _send_window(ws.send_str, ws.receive_str, ids, window, n)
        got = result(n, start)
        got["extensions"] = "none"
        return got
    finally:
        await ws.close()
        await session.close()


async def recv_aio(spec: WorkerSpec) -> WorkerResult:
    """Bare aiohttp client receive loop, ``json.loads`` each frame (no compression)."""
    session, ws = await _aio_connect(spec, "receiver")
    current: list[Counter] = []

    async def loop() -> None:
        async for message in ws:
            text = message.type is aiohttp.WSMsgType.TEXT
            if text and json.loads(message.data)["type"] == "chat:message":
                current[-1].hit()

    reader = asyncio.create_task(loop())
    try:
        got = await receive(spec, current)
        got["extensions"] = "none"
        return got
    finally:
        await ws.close()
        await session.close()
        reader.cancel()


# -- python-socketio ----------------------------------------------------------------------


async def _sio_connect(spec: WorkerSpec, user: str) -> socketio.AsyncClient:
    sio = socketio.AsyncClient(reconnection=False)
    welcomed = asyncio.Event()
    sio.on("connected", lambda data: welcomed.set())
    await sio.connect(spec["http"], auth={"token": Token()(user)}, transports=["websocket"])
    await asyncio.wait_for(welcomed.wait(), 10.0)
    reply = await sio.call("room:join", {"roomId": ROOM}, timeout=10)
    assert reply["success"], reply
    return sio


async def send_sio(spec: WorkerSpec) -> WorkerResult:
    n = spec["n"]
    sio = await _sio_connect(spec, "sender")
    try:
        ids = (f"m-{RUN}-{i}" for i in itertools.count())
        for _ in range(WARMUP):
            await sio.call("chat:send", {"roomId": ROOM, "text": TEXT, "messageId": next(ids)})
        start = timer()
        for _ in range(n):
            reply = await sio.call(
                "chat:send", {"roomId": ROOM, "text": TEXT, "messageId": next(ids)}
            )
            assert reply["success"], reply
        return result(n, start)
    finally:
        await sio.disconnect()


async def recv_sio(spec: WorkerSpec) -> WorkerResult:
    """Bare python-socketio: a handler for ``chat:message``."""
    sio = await _sio_connect(spec, "receiver")
    current: list[Counter] = []
    sio.on("chat:message", lambda data: current[-1].hit())
    try:
        return await receive(spec, current)
    finally:
        await sio.disconnect()
