"""One client measurement in a fresh process: ``python -m benchmarks.worker '<json spec>'``.

The suite (``python -m benchmarks``) starts one worker per measurement, so that
rtclient and each baseline run under the same conditions (a fresh interpreter, nothing
else on its event loop) and so that py-spy can profile exactly one of them. The last
line on stdout is the result, as JSON: ``count``, ``seconds`` (wall), ``cpu``
(this process's CPU seconds over the same span) and case-specific facts.

Kinds (``spec["kind"]``, :data:`KINDS`; the bare baselines are in ``benchmarks.bare``):

- ``send_rt`` / ``send_ws``: acked ``chat:send`` with ``window`` requests outstanding;
  ``send_rt_nowait``: ``send_nowait`` everything, wait until all are acked;
- ``send_rt_sio`` / ``send_sio``: the same, window 1, over Socket.IO;
- ``recv_rt`` / ``recv_ws`` / ``recv_rt_sio`` / ``recv_sio``: subscribe to a room, have
  the server flood it, time first to last message;
- ``idle_rt`` / ``idle_ws``: ``clients`` idle connections; RSS and tracemalloc deltas;
- ``send_aio`` / ``recv_aio``: bare aiohttp; ``*_rt_aio``: rtclient ``transport='aiohttp'``.

The spec and the result are :class:`~benchmarks.spec.WorkerSpec` and
:class:`~benchmarks.spec.WorkerResult`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from websockets.asyncio.client import ClientConnection

from rtclient import Client
from rtclient.events import ConnectionState

from . import bare
from .harness import Token
from .measure import ROOM, WARMUP, Counter, idle, receive, result, timer
from .server import TEXT, die_with_parent, raise_nofile
from .spec import Kind, Transport, WorkerResult, WorkerSpec

__all__ = ["KINDS", "main"]


def _rt_extensions(client: Client) -> str:
    """The negotiated WebSocket extensions of rtclient's connection (for the report)."""
    conn = getattr(client, "_conn", None)
    ws = getattr(conn, "_ws", None)
    if isinstance(ws, aiohttp.ClientWebSocketResponse):
        return ws._response.headers.get("Sec-WebSocket-Extensions", "") or "none"
    return bare.extensions(ws) if isinstance(ws, ClientConnection) else "?"


async def _rt_client(spec: WorkerSpec, user: str, **options: Any) -> Client:
    token = Token()(user)
    transport = options.pop("transport", "websocket")
    url = spec["http"] if transport == "socketio" else spec["url"]
    if transport in ("websocket", "aiohttp"):
        options.setdefault("compression", spec.get("compression", True))
    client = Client(url, token=token, transport=transport, ping_interval=None, **options)
    await client.connect()
    await client.join(ROOM)
    return client


async def send_rt(spec: WorkerSpec) -> WorkerResult:
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

        start = timer()
        if window == 1:
            for _ in range(n):
                await client.send(ROOM, TEXT)
        else:
            async with asyncio.TaskGroup() as group:
                for _ in range(window):
                    group.create_task(worker())
        got = result(n, start)
        got["extensions"] = _rt_extensions(client)
        got["resent"] = client.stats().get("resent", 0)
        return got
    finally:
        await client.close()


async def send_rt_nowait(spec: WorkerSpec) -> WorkerResult:
    n, window = spec["n"], spec["window"]
    client = await _rt_client(spec, "sender", max_in_flight=window)
    try:
        for _ in range(WARMUP):
            await client.send(ROOM, TEXT)
        target = client.stats()["acked"] + n
        start = timer()
        for _ in range(n):
            client.send_nowait(ROOM, TEXT)
        # Polls the public stats(): 0.5 ms of resolution, no private hook.
        while client.stats()["acked"] < target:  # noqa: ASYNC110
            await asyncio.sleep(0.0005)
        got = result(n, start)
        got["extensions"] = _rt_extensions(client)
        return got
    finally:
        await client.close()


async def recv_rt(spec: WorkerSpec) -> WorkerResult:
    transport = spec.get("transport", "websocket")
    client = await _rt_client(spec, "receiver", transport=transport)
    current: list[Counter] = []
    client.on("chat:message", lambda event: current[-1].hit())
    try:
        got = await receive(spec, current)
        got["extensions"] = _rt_extensions(client)
        return got
    finally:
        await client.close()


async def idle_rt(spec: WorkerSpec) -> WorkerResult:
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
        return await idle(spec, connect_one)
    finally:
        await asyncio.gather(*(c.close(flush=False) for c in clients), return_exceptions=True)


Run = Callable[[WorkerSpec], Awaitable[WorkerResult]]


def _on(transport: Transport, run: Run, **fixed: Any) -> Run:
    """``run`` with rtclient's ``transport=`` (and any other spec keys) fixed."""

    def with_transport(spec: WorkerSpec) -> Awaitable[WorkerResult]:
        return run({**spec, "transport": transport, **fixed})  # type: ignore[typeddict-item]

    return with_transport


KINDS: dict[Kind, Run] = {
    "send_rt": send_rt,
    "send_rt_nowait": send_rt_nowait,
    "send_ws": bare.send_ws,
    "send_rt_sio": _on("socketio", send_rt, window=1),
    "send_rt_aio": _on("aiohttp", send_rt),
    "recv_rt_aio": _on("aiohttp", recv_rt),
    "idle_rt_aio": _on("aiohttp", idle_rt),
    "send_sio": bare.send_sio,
    "send_aio": bare.send_aio,
    "recv_aio": bare.recv_aio,
    "recv_rt": recv_rt,
    "recv_ws": bare.recv_ws,
    "recv_rt_sio": _on("socketio", recv_rt),
    "recv_sio": bare.recv_sio,
    "idle_rt": idle_rt,
    "idle_ws": bare.idle_ws,
}
"""Every kind a worker runs, by name."""


async def _run(kind: Run, spec: WorkerSpec) -> WorkerResult:
    return await kind(spec)


def main() -> None:
    spec: WorkerSpec = json.loads(sys.argv[1])
    die_with_parent()
    raise_nofile()
    got = asyncio.run(_run(KINDS[spec["kind"]], spec))
    print(json.dumps(got), flush=True)


if __name__ == "__main__":
    main()
