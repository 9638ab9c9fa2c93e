"""``python -m benchmarks.hostile_clients``: fake_server under hostile clients, measured.

The server runs in a process of its own (``python -m fake_server`` with its defaults),
so that the hostile and the healthy clients' own cost stays out of its figures.

Two measurements:

``unread``
    One raw WebSocket sends ``--pings`` ``ping`` requests and never reads a reply.
    Reports the server's RSS growth (``/proc/<pid>/status``) and how the connection
    ended.
``flood``
    For each kind of flood (``chat``, ``ping``, ``sync``, ``receipts``) one connection,
    in a process of its own, sends requests for ``--seconds`` as fast as it can (raw
    WebSocket: reading its replies; Socket.IO: emits without callbacks) while a healthy
    client of the same endpoint (``--endpoint``) in the same room sends one ``ping``
    every 10 ms and times its ack.  Reports the healthy client's p50 / p99 / max round
    trip, from the flood's start until the server caught up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import socketio
import websockets
from websockets.asyncio.client import ClientConnection

from fake_server.auth import TokenAuthority

__all__ = ["main"]

SECRET = "benchmark-hostile-secret-" + "0" * 40
KINDS = ("chat", "ping", "sync", "receipts")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


@contextlib.asynccontextmanager
async def _server() -> AsyncIterator[tuple[int, int]]:
    """Start ``python -m fake_server`` on a free port; yield (port, pid)."""
    port = _free_port()
    proc = subprocess.Popen(  # noqa: ASYNC220 (starting a process does not block)
        [sys.executable, "-m", "fake_server", "--port", str(port), "--secret", SECRET],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{port}/health") as r:
                        if r.status == 200:
                            break
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError("the server did not start")
        yield port, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:  # still busy with a backlog
            proc.kill()
            proc.wait()


async def _health(port: int) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/health") as r,
    ):
        doc: dict[str, Any] = await r.json()
        return doc


async def _connect(port: int, user: str, **kw: Any) -> ClientConnection:
    token = TokenAuthority(SECRET, leeway=0.0).issue(user, now=time.time())
    ws = await websockets.connect(
        f"ws://127.0.0.1:{port}/ws",
        additional_headers={"Authorization": f"Bearer {token}"},
        ping_interval=None,
        max_size=None,
        open_timeout=120,  # after a flood, the unchanged server is busy for long
        **kw,
    )
    await ws.recv()  # connected
    return ws


async def _request(ws: ClientConnection, kind: str, rid: str, payload: dict[str, Any]) -> None:
    await ws.send(json.dumps({"type": kind, "id": rid, "payload": payload}))


async def _until_ack(ws: ClientConnection) -> None:
    while json.loads(await ws.recv()).get("type") != "ack":
        pass


async def unread(pings: int, ts_size: int) -> dict[str, Any]:
    """``pings`` requests, replies never read: the server's RSS growth."""
    async with _server() as (port, pid):
        healthy = await _connect(port, "healthy")
        before = _rss_kib(pid)
        # The client reads nothing: its own buffer fills, then TCP pushes back.
        # No compression: repeated pings would deflate to almost nothing.
        ws = await _connect(port, "hostile", max_queue=1, compression=None)
        sent = 0
        closed = "open"
        frame = json.dumps({"type": "ping", "id": "p", "payload": {"ts": "x" * ts_size}})
        try:
            async with asyncio.timeout(120):
                for sent in range(1, pings + 1):  # noqa: B007
                    await ws.send(frame)
        except websockets.ConnectionClosed as exc:
            rcvd = exc.rcvd
            closed = "cut (no close frame)" if rcvd is None else f"closed {rcvd.code} {rcvd.reason}"
        except TimeoutError:
            closed = "send blocked (TCP backpressure)"
        # The healthy client's ping is answered once the server has worked through
        # what it received; sample the RSS meanwhile and once more after.
        peak = _rss_kib(pid)
        t0 = time.perf_counter()
        await _request(healthy, "ping", "h", {"ts": 1})
        answered = asyncio.create_task(_until_ack(healthy))
        while not answered.done():
            await asyncio.wait({answered}, timeout=0.05)
            peak = max(peak, _rss_kib(pid))
        healthy_rtt = (time.perf_counter() - t0) * 1000
        await asyncio.sleep(1.0)
        peak = max(peak, _rss_kib(pid))
        health = await _health(port)
        await ws.close()
        await healthy.close()
        return {
            "pings_sent": sent,
            "ts_size": ts_size,
            "hostile": closed,
            "rss_before_mb": round(before / 1024, 1),
            "rss_growth_mb": round((peak - before) / 1024, 1),
            "healthy_rtt_ms_after": round(healthy_rtt, 2),
            "counters": {k: v for k, v in health["counters"].items() if v},
        }


async def _seed(port: int, room: str, events: int) -> None:
    """``events`` messages in ``room``, from enough users to stay under the rate limit."""
    per_user = 40
    for u in range(0, events, per_user):
        ws = await _connect(port, f"seed{u}")
        await _request(ws, "room:join", "j", {"roomId": room})
        n = min(per_user, events - u)
        for i in range(n):
            await _request(ws, "chat:send", f"s{u}-{i}", {"roomId": room, "text": "x" * 200})
        acked = 0
        while acked < n + 1:
            if json.loads(await ws.recv()).get("type") == "ack":
                acked += 1
        await ws.close()


def _flood_frame(kind: str, i: int, room: str) -> str:
    if kind == "chat":
        body: dict[str, Any] = {
            "type": "chat:send",
            "id": f"f{i}",
            "payload": {"roomId": room, "text": "flood"},
        }
    elif kind == "ping":
        body = {"type": "ping", "id": f"f{i}", "payload": {"ts": i}}
    elif kind == "sync":
        body = {"type": "sync:messages", "id": f"f{i}", "payload": {"roomId": room, "limit": 500}}
    else:
        body = {"type": "message:read", "id": f"f{i}", "payload": {"roomId": room, "eventId": 1}}
    return json.dumps(body)


async def _flooder(kind: str, endpoint: str, port: int, room: str, seconds: float) -> None:
    """The flooding connection, in a process of its own (``--flooder KIND``).

    It sends as fast as it can for ``seconds`` (raw WebSocket: reading its replies in a
    task; Socket.IO: emits without callbacks) and prints what it sent as JSON.
    """
    count = 0
    state = "open"
    if endpoint == "ws":
        ws = await _connect(port, f"flooder-{kind}")
        await _request(ws, "room:join", "j", {"roomId": room})

        async def drain() -> None:
            with contextlib.suppress(websockets.ConnectionClosed):
                async for _ in ws:
                    pass

        reader = asyncio.create_task(drain())
        print("START", flush=True)
        t0 = time.perf_counter()
        try:
            while time.perf_counter() - t0 < seconds:
                for _ in range(100):
                    count += 1
                    await ws.send(_flood_frame(kind, count, room))
                await asyncio.sleep(0)
        except websockets.ConnectionClosed as exc:
            state = f"closed {exc.rcvd.code if exc.rcvd else None}"
        await ws.close()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    else:
        client = await _sio_client(port, f"flooder-sio-{kind}", room)
        print("START", flush=True)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds and client.connected:
            for _ in range(100):
                count += 1
                name, data = _sio_flood_event(kind, count, room)
                await client.emit(name, data)
            await asyncio.sleep(0)
        state = "open" if client.connected else "disconnected"
        await client.disconnect()
    print(json.dumps({"flood": count, "flooder": state}), flush=True)


async def _ws_prober(port: int, kind: str, room: str) -> Callable[[int], Awaitable[None]]:
    healthy = await _connect(port, f"healthy-{kind}")
    await _request(healthy, "room:join", "j", {"roomId": room})

    async def ping(i: int) -> None:
        await _request(healthy, "ping", f"h{i}", {"ts": i})
        while True:
            frame = json.loads(await healthy.recv())
            if frame.get("type") == "ack" and frame.get("id") == f"h{i}":
                return

    return ping


async def _sio_prober(port: int, kind: str, room: str) -> Callable[[int], Awaitable[None]]:
    healthy = await _sio_client(port, f"healthy-sio-{kind}", room)

    async def ping(i: int) -> None:
        await healthy.call("ping", {"ts": i}, timeout=120)

    return ping


async def flood(kind: str, endpoint: str, seconds: float, port: int, room: str) -> dict[str, Any]:
    """A healthy client's ping round trip while a connection in another process floods."""
    prober = _ws_prober if endpoint == "ws" else _sio_prober
    ping = await prober(port, kind, room)
    rtts: list[float] = []
    done = asyncio.Event()

    async def probe() -> None:
        i = 0
        while not done.is_set():
            i += 1
            t0 = time.perf_counter()
            await ping(i)
            rtts.append(time.perf_counter() - t0)
            await asyncio.sleep(0.01)

    probing = asyncio.create_task(probe())
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.hostile_clients",
        "--flooder",
        kind,
        "--endpoint",
        endpoint,
        "--port",
        str(port),
        "--seconds",
        str(seconds),
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    await proc.stdout.readline()  # START: connected, flooding from now on
    t0 = time.perf_counter()
    first = len(rtts)
    out, _ = await proc.communicate()
    # Keep probing until the server has caught up with the flood.
    mark = len(rtts)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(120):
            while len(rtts) <= mark + 5:  # noqa: ASYNC110 (the prober's state)
                await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - t0
    done.set()
    await probing
    sent: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    name = kind if endpoint == "ws" else f"sio {kind}"
    return {"kind": name, **sent, "seconds": round(elapsed, 2), **_percentiles(rtts[first:])}


def _percentiles(rtts: list[float]) -> dict[str, Any]:
    ms = sorted(r * 1000 for r in rtts)
    return {
        "probes": len(ms),
        "p50_ms": round(statistics.median(ms), 2) if ms else None,
        "p99_ms": round(ms[max(0, int(len(ms) * 0.99) - 1)], 2) if ms else None,
        "max_ms": round(ms[-1], 2) if ms else None,
    }


async def _sio_client(port: int, user: str, room: str) -> socketio.AsyncClient:
    client = socketio.AsyncClient(reconnection=False, handle_sigint=False)
    token = TokenAuthority(SECRET, leeway=0.0).issue(user, now=time.time())
    await client.connect(
        f"http://127.0.0.1:{port}",
        auth={"token": token},
        transports=["websocket"],
        wait_timeout=120,
    )
    await client.call("room:join", {"roomId": room}, timeout=120)
    return client


def _sio_flood_event(kind: str, i: int, room: str) -> tuple[str, dict[str, Any]]:
    if kind == "chat":
        return "chat:send", {"roomId": room, "text": "flood", "messageId": f"f{i}"}
    if kind == "ping":
        return "ping", {"ts": i}
    if kind == "sync":
        return "sync:messages", {"roomId": room, "limit": 500}
    return "message:read", {"roomId": room, "eventId": 1}


async def _run(args: argparse.Namespace) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    if "unread" in args.only:
        for size in args.ts_size:
            results.append({"case": "unread", **await unread(args.pings, size)})
    kinds = [k for k in KINDS if k in args.only]
    if kinds:
        async with _server() as (port, pid):
            await _seed(port, "busy", args.events)
            for kind in kinds:
                row = await flood(kind, args.endpoint, args.seconds, port, "busy")
                results.append({"case": "flood", "rss_mb": round(_rss_kib(pid) / 1024, 1), **row})
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.hostile_clients", description=__doc__.splitlines()[0]
    )
    p.add_argument("--pings", type=int, default=200_000)
    p.add_argument("--ts-size", type=int, nargs="*", default=[1], help="ping ts lengths")
    p.add_argument("--seconds", type=float, default=3.0, help="length of each flood")
    p.add_argument("--events", type=int, default=500, help="events in the flooded room")
    p.add_argument("--only", nargs="*", default=["unread", *KINDS])
    p.add_argument("--endpoint", choices=["ws", "sio"], default="ws", help="for the floods")
    p.add_argument("--flooder", choices=KINDS, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.flooder:
        asyncio.run(_flooder(args.flooder, args.endpoint, args.port, "busy", args.seconds))
        return 0
    print(f"# cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f}", flush=True)
    for row in asyncio.run(_run(args)):
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
