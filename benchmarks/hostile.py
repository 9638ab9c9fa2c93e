"""Counts against misbehaving servers: ``python -m benchmarks.hostile``.

- the reconnect storm: a server that welcomes and closes with 4002 at once; attempts
  in a window (default backoff);
- a rate limit: messages sent as fast as the client can to a FakeServer that allows
  ``rate`` per second; resends and RATE_LIMIT replies.

Run it on a checkout before and after a change to compare; the figures of issue 13 are
in CHANGELOG.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Literal

from websockets.asyncio.server import ServerConnection, serve

from fake_server import FakeServer
from rtclient import Client, ConnectionState

SECRET = "benchmark-secret-" + "0123456789abcdef" * 4


Transport = Literal["websocket", "aiohttp", "socketio"]


async def storm(transport: Transport, window: float) -> str:
    handshakes = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal handshakes
        handshakes += 1
        await ws.send(json.dumps({"type": "connected", "payload": {"userId": "x"}}))
        await ws.close(4002, "token expired")

    async with serve(handler, "127.0.0.1", 0) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        client = Client(f"ws://127.0.0.1:{port}/", token=lambda: "t", transport=transport)
        started = time.monotonic()
        try:
            async with asyncio.timeout(window):
                await client.connect()
                await client.wait_for(ConnectionState.CLOSED)
        except TimeoutError:
            pass
        elapsed = time.monotonic() - started
        await client.close(flush=False)
    return f"storm {transport}: {handshakes} attempts in {elapsed:.1f} s"


async def rate_limit(transport: Transport, n: int, rate: float, burst: int) -> str:
    async with FakeServer(secret=SECRET, rate_per_second=rate, rate_burst=burst) as server:
        url = server.sio_url if transport == "socketio" else server.ws_url
        token = server.issue_token("alice")
        async with Client(url, token=token, transport=transport) as client:
            await client.join("lobby")
            started = time.monotonic()
            await asyncio.gather(*(client.send("lobby", f"m{i}") for i in range(n)))
            elapsed = time.monotonic() - started
            stats = client.stats()
        return (
            f"rate limit {transport}: {n} messages at {rate:g}/s (burst {burst}): "
            f"{stats['resent']} resends, {server.counters['rate_limited']} RATE_LIMIT "
            f"replies, {elapsed:.1f} s"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=3.0)
    parser.add_argument("--messages", type=int, default=300)
    args = parser.parse_args()
    for transport in ("websocket", "aiohttp"):
        print(await storm(transport, args.window))
    for limited in ("websocket", "aiohttp", "socketio"):
        print(await rate_limit(limited, args.messages, 20.0, 50))


if __name__ == "__main__":
    asyncio.run(main())
