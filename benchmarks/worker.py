"""One client measurement in a fresh process: ``python -m benchmarks.worker '<json spec>'``.

The suite (``python -m benchmarks``) starts one worker per measurement, so that
rtclient and each baseline run under the same conditions (a fresh interpreter, nothing
else on its event loop) and so that py-spy can profile exactly one of them. The last
line on stdout is the result, as JSON: ``count``, ``seconds`` (wall), ``cpu``
(this process's CPU seconds over the same span) and case-specific facts.

Kinds (``spec["kind"]``):

- ``send_rt`` / ``send_ws``: acked ``chat:send`` with ``window`` requests outstanding;
  ``send_rt_nowait``: ``send_nowait`` everything, wait until all are acked;
- ``send_rt_sio`` / ``send_sio``: the same, window 1, over Socket.IO;
- ``recv_rt`` / ``recv_ws`` / ``recv_rt_sio`` / ``recv_sio``: subscribe to a room, have
  the server flood it, time first to last message;
- ``idle_rt`` / ``idle_ws``: ``clients`` idle connections; RSS and tracemalloc deltas.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import os
import resource
import sys
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import socketio
import websockets
from websockets.asyncio.client import ClientConnection

from rtclient import Client
from rtclient.events import ConnectionState

from .harness import Token
from .server import TEXT, die_with_parent, raise_nofile

Spec = dict[str, Any]
Result = dict[str, Any]

ROOM = "bench"
WARMUP = 200
RUN = uuid.uuid4().hex[:12]


def _timer() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _result(count: int, start: tuple[float, float], **extra: Any) -> Result:
    wall, cpu = time.perf_counter() - start[0], time.process_time() - start[1]
    return {"count": count, "seconds": wall, "cpu": cpu, **extra}


def _extensions(ws: ClientConnection | None) -> str:
    if ws is None or ws.response is None:
        return "?"
    return ws.response.headers.get("Sec-WebSocket-Extensions", "") or "none"


def _rt_extensions(client: Client) -> str:
    """The negotiated WebSocket extensions of rtclient's connection (for the report)."""
    conn = getattr(client, "_conn", None)
    ws = getattr(conn, "_ws", None)
    if isinstance(ws, aiohttp.ClientWebSocketResponse):
        return ws._response.headers.get("Sec-WebSocket-Extensions", "") or "none"
    return _extensions(ws) if isinstance(ws, ClientConnection) else "?"


# -- raw WebSocket: rtclient --------------------------------------------------------------


async def _rt_client(spec: Spec, user: str, **options: Any) -> Client:
    token = Token()(user)
    transport = options.pop("transport", "websocket")
    url = spec["http"] if transport == "socketio" else spec["url"]
    if transport in ("websocket", "aiohttp"):
        options.setdefault("compression", spec.get("compression", True))
    client = Client(url, token=token, transport=transport, ping_interval=None, **options)
    await client.connect()
    await client.join(ROOM)
    return client


async def send_rt(spec: Spec) -> Result:
    n, window = spec["n"], spec["window"]
    transport = spec.get("transport", "websocket")
    client = await _rt_client(spec, "sender", max_in_flight=window, transport=transport)
    try:
        for _ in range(WARMUP):
            await client.send(ROOM, TEXT)
        counter = itertools.count()

        async def worker() -> None:
            while next(counter) < n:
                await client.send(ROOM, TEXT)

        start = _timer()
        if window == 1:
            for _ in range(n):
                await client.send(ROOM, TEXT)
        else:
            async with asyncio.TaskGroup() as group:
                for _ in range(window):
                    group.create_task(worker())
        result = _result(n, start, extensions=_rt_extensions(client))
        stats = client.stats()
        result["resent"] = stats.get("resent", 0)
        return result
    finally:
        await client.close()


async def send_rt_nowait(spec: Spec) -> Result:
    n, window = spec["n"], spec["window"]
    client = await _rt_client(spec, "sender", max_in_flight=window)
    try:
        for _ in range(WARMUP):
            await client.send(ROOM, TEXT)
        target = client.stats()["acked"] + n
        start = _timer()
        for _ in range(n):
            client.send_nowait(ROOM, TEXT)
        # Polls the public stats(): 0.5 ms of resolution, no private hook.
        while client.stats()["acked"] < target:  # noqa: ASYNC110
            await asyncio.sleep(0.0005)
        return _result(n, start, extensions=_rt_extensions(client))
    finally:
        await client.close()


# -- raw WebSocket: the bare baseline -----------------------------------------------------


async def _ws_connect(spec: Spec, user: str) -> ClientConnection:
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


async def send_ws(spec: Spec) -> Result:
    """Bare websockets: chat:send with an id, match acks by id, ``window`` outstanding."""
    n, window = spec["n"], spec["window"]
    ws = await _ws_connect(spec, "sender")
    try:
        await _ws_request(ws, "room:join", {"roomId": ROOM})
        ids = (f"m-{RUN}-{i}" for i in itertools.count())
        payload = {"roomId": ROOM, "text": TEXT}

        async def run(count: int) -> None:
            pending: set[str] = set()
            sent = 0
            while sent < min(window, count):
                message_id = next(ids)
                pending.add(message_id)
                await ws.send(
                    json.dumps({"type": "chat:send", "id": message_id, "payload": payload})
                )
                sent += 1
            while pending:
                frame = json.loads(await ws.recv())
                if frame.get("type") != "ack":
                    continue  # our own chat:message echo
                pending.discard(frame["id"])
                if sent < count:
                    message_id = next(ids)
                    pending.add(message_id)
                    await ws.send(
                        json.dumps({"type": "chat:send", "id": message_id, "payload": payload})
                    )
                    sent += 1

        await run(WARMUP)
        start = _timer()
        await run(n)
        return _result(n, start, extensions=_extensions(ws))
    finally:
        await ws.close()


# -- raw WebSocket: bare aiohttp (the transport that could replace websockets) -----------


async def _aio_connect(spec: Spec, user: str) -> tuple[aiohttp.ClientSession, Any]:
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


async def send_aio(spec: Spec) -> Result:
    """Bare aiohttp client, the same exchange as :func:`send_ws` (no compression)."""
    n, window = spec["n"], spec["window"]
    session, ws = await _aio_connect(spec, "sender")
    try:
        ids = (f"a-{RUN}-{i}" for i in itertools.count())
        payload = {"roomId": ROOM, "text": TEXT}

        async def run(count: int) -> None:
            pending: set[str] = set()
            sent = 0
            while sent < min(window, count):
                message_id = next(ids)
                pending.add(message_id)
                await ws.send_str(
                    json.dumps({"type": "chat:send", "id": message_id, "payload": payload})
                )
                sent += 1
            while pending:
                frame = json.loads(await ws.receive_str())
                if frame.get("type") != "ack":
                    continue
                pending.discard(frame["id"])
                if sent < count:
                    message_id = next(ids)
                    pending.add(message_id)
                    await ws.send_str(
                        json.dumps({"type": "chat:send", "id": message_id, "payload": payload})
                    )
                    sent += 1

        await run(WARMUP)
        start = _timer()
        await run(n)
        return _result(n, start, extensions="none")
    finally:
        await ws.close()
        await session.close()


async def recv_aio(spec: Spec) -> Result:
    """Bare aiohttp client receive loop, ``json.loads`` each frame (no compression)."""
    session, ws = await _aio_connect(spec, "receiver")
    current: list[_Counter] = []

    async def loop() -> None:
        async for message in ws:
            text = message.type is aiohttp.WSMsgType.TEXT
            if text and json.loads(message.data)["type"] == "chat:message":
                current[-1].hit()

    reader = asyncio.create_task(loop())
    try:
        result = await _receive(spec, current)
        result["extensions"] = "none"
        return result
    finally:
        await ws.close()
        await session.close()
        reader.cancel()


# -- Socket.IO: the bare python-socketio baseline -----------------------------------------


async def _sio_connect(spec: Spec, user: str) -> socketio.AsyncClient:
    sio = socketio.AsyncClient(reconnection=False)
    welcomed = asyncio.Event()
    sio.on("connected", lambda data: welcomed.set())
    await sio.connect(spec["http"], auth={"token": Token()(user)}, transports=["websocket"])
    await asyncio.wait_for(welcomed.wait(), 10.0)
    reply = await sio.call("room:join", {"roomId": ROOM}, timeout=10)
    assert reply["success"], reply
    return sio


async def send_sio(spec: Spec) -> Result:
    n = spec["n"]
    sio = await _sio_connect(spec, "sender")
    try:
        ids = (f"m-{RUN}-{i}" for i in itertools.count())
        for _ in range(WARMUP):
            await sio.call("chat:send", {"roomId": ROOM, "text": TEXT, "messageId": next(ids)})
        start = _timer()
        for _ in range(n):
            reply = await sio.call(
                "chat:send", {"roomId": ROOM, "text": TEXT, "messageId": next(ids)}
            )
            assert reply["success"], reply
        return _result(n, start)
    finally:
        await sio.disconnect()


# -- receive ------------------------------------------------------------------------------


async def _flood(spec: Spec, n: int) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", spec["control_port"])
    try:
        writer.write(f"flood {ROOM} {n} {len(TEXT)}\n".encode())
        await writer.drain()
        answer = (await reader.readline()).decode().split()
    finally:
        writer.close()
    if answer[:1] != ["OK"]:
        raise RuntimeError(f"flood failed: {answer}")
    return float(answer[2])


class _Counter:
    """Counts deliveries; sets ``done`` at ``n``."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.seen = 0
        self.done = asyncio.Event()

    def hit(self) -> None:
        self.seen += 1
        if self.seen == self.n:
            self.done.set()


async def _receive(spec: Spec, current: list[_Counter]) -> Result:
    """Warm up, then flood ``n`` messages; time the first to the last delivery."""
    n = spec["n"]
    current.append(_Counter(WARMUP))
    await _flood(spec, WARMUP)
    await asyncio.wait_for(current[-1].done.wait(), 30.0)
    counter = _Counter(n)
    current.append(counter)
    # From the request, not from the first delivery: a client that reads ahead of its
    # handlers would otherwise hide part of its work before the first delivery.
    start = _timer()
    flood = asyncio.create_task(_flood(spec, n))
    await asyncio.wait_for(counter.done.wait(), 120.0)
    result = _result(n, start)
    result["server_seconds"] = await flood
    return result


async def recv_rt(spec: Spec) -> Result:
    transport = spec.get("transport", "websocket")
    client = await _rt_client(spec, "receiver", transport=transport)
    current: list[_Counter] = []
    client.on("chat:message", lambda event: current[-1].hit())
    try:
        result = await _receive(spec, current)
        result["extensions"] = _rt_extensions(client)
        return result
    finally:
        await client.close()


async def recv_ws(spec: Spec) -> Result:
    """Bare websockets: one receive loop, ``json.loads`` each frame."""
    ws = await _ws_connect(spec, "receiver")
    await _ws_request(ws, "room:join", {"roomId": ROOM})
    current: list[_Counter] = []

    async def loop() -> None:
        async for frame in ws:
            message = json.loads(frame)
            if message["type"] == "chat:message":
                current[-1].hit()

    reader = asyncio.create_task(loop())
    try:
        result = await _receive(spec, current)
        result["extensions"] = _extensions(ws)
        return result
    finally:
        await ws.close()
        reader.cancel()


async def recv_sio(spec: Spec) -> Result:
    """Bare python-socketio: a handler for ``chat:message``."""
    sio = await _sio_connect(spec, "receiver")
    current: list[_Counter] = []
    sio.on("chat:message", lambda data: current[-1].hit())
    try:
        return await _receive(spec, current)
    finally:
        await sio.disconnect()


# -- idle memory --------------------------------------------------------------------------


def _rss() -> int:
    """Resident set size now, in bytes (Linux /proc; ru_maxrss elsewhere)."""
    try:
        fields = Path("/proc/self/statm").read_text().split()
        return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


async def _idle(spec: Spec, connect_one: Callable[[int], Awaitable[Any]]) -> Result:
    """Open ``clients`` connections (in batches), then measure what they hold."""
    clients = spec["clients"]
    trace = spec.get("tracemalloc", False)
    await connect_one(-1)  # warm up imports, caches, the first connection's one-offs
    gc.collect()
    await asyncio.sleep(0.2)
    if trace:
        tracemalloc.start()
    rss0 = _rss()
    traced0 = tracemalloc.get_traced_memory()[0] if trace else 0
    before = tracemalloc.take_snapshot() if trace else None
    start = _timer()
    held: list[Any] = []
    batch = 50
    for first in range(0, clients, batch):
        held += await asyncio.gather(
            *(connect_one(i) for i in range(first, min(first + batch, clients)))
        )
    connected_in = time.perf_counter() - start[0]
    await asyncio.sleep(1.0)  # let every welcome, join ack and presence event settle
    gc.collect()
    rss1 = _rss()
    traced1 = tracemalloc.get_traced_memory()[0] if trace else 0
    result = _result(
        clients,
        start,
        rss_bytes=rss1 - rss0,
        traced_bytes=traced1 - traced0,
        connected_in=connected_in,
        tasks=len(asyncio.all_tasks()),
    )
    result["held"] = len(held)
    if before is not None:
        # Where the per-client bytes were allocated: the biggest sites, by line.
        after = tracemalloc.take_snapshot()
        stats = after.compare_to(before, "lineno")
        result["sites"] = [
            [_site(stat.traceback[0].filename, stat.traceback[0].lineno), stat.size_diff]
            for stat in stats[:25]
        ]
        tracemalloc.stop()
    return result


def _site(filename: str, lineno: int) -> str:
    for marker in ("site-packages/", "/lib/python3.", "/work/main/"):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
            if marker == "/lib/python3.":
                filename = filename.split("/", 1)[1]
            break
    return f"{filename}:{lineno}"


async def idle_rt(spec: Spec) -> Result:
    clients: list[Client] = []

    async def connect_one(i: int) -> Client:
        client = Client(
            spec["url"],
            token=Token()(f"idle-{i}"),
            transport=spec.get("transport", "websocket"),
            ping_interval=None,
        )
        await client.connect()
        await client.join(f"idle-{i}")  # a room each: no presence storm between them
        assert client.state is ConnectionState.CONNECTED
        clients.append(client)
        return client

    try:
        return await _idle(spec, connect_one)
    finally:
        await asyncio.gather(*(c.close(flush=False) for c in clients), return_exceptions=True)


async def idle_ws(spec: Spec) -> Result:
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
        return await _idle(spec, connect_one)
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


KINDS: dict[str, Callable[[Spec], Awaitable[Result]]] = {
    "send_rt": send_rt,
    "send_rt_nowait": send_rt_nowait,
    "send_ws": send_ws,
    "send_rt_sio": lambda spec: send_rt({**spec, "transport": "socketio", "window": 1}),
    "send_rt_aio": lambda spec: send_rt({**spec, "transport": "aiohttp"}),
    "recv_rt_aio": lambda spec: recv_rt({**spec, "transport": "aiohttp"}),
    "idle_rt_aio": lambda spec: idle_rt({**spec, "transport": "aiohttp"}),
    "send_sio": send_sio,
    "send_aio": send_aio,
    "recv_aio": recv_aio,
    "recv_rt": recv_rt,
    "recv_ws": recv_ws,
    "recv_rt_sio": lambda spec: recv_rt({**spec, "transport": "socketio"}),
    "recv_sio": recv_sio,
    "idle_rt": idle_rt,
    "idle_ws": idle_ws,
}


async def _run(kind: Callable[[Spec], Awaitable[Result]], spec: Spec) -> Result:
    return await kind(spec)


def main() -> None:
    spec: Spec = json.loads(sys.argv[1])
    die_with_parent()
    raise_nofile()
    result = asyncio.run(_run(KINDS[spec["kind"]], spec))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
