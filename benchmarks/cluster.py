"""Delivery latency on a fake_server cluster: ``python -m benchmarks.cluster [--n 500]``.

One sender and one receiver (raw WebSocket, in this process), one message in flight at
a time, timed from the sender's ``chat:send`` to the receiver's ``chat:message``:

- ``memory``: one in-memory node (the embedded default), both users on it;
- ``redis, same node``: one node on Redis, both users on it (the event goes through
  the commit script and back through pub/sub to the same node);
- ``redis, across nodes``: two nodes on one Redis, the sender on one, the receiver on
  the other.

The nodes are in-process (one event loop with the clients), Redis is a real
``redis-server`` on loopback (:class:`~rtclient.testing.redis_server.RedisServer`).
Prints p50 / p99 in milliseconds; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import websockets

from fake_server import FakeServer
from rtclient.testing.redis_server import RedisServer

from .harness import percentile

SETTINGS: dict[str, Any] = {
    "secret": "bench-cluster-" + "0123456789abcdef" * 4,
    "rate_per_second": 1e9,
    "rate_burst": 10**9,
    "query_per_second": 1e9,
    "query_burst": 10**9,
}


async def _user(node: FakeServer, user: str) -> Any:
    ws = await websockets.connect(
        node.ws_url,
        additional_headers={"Authorization": f"Bearer {node.issue_token(user)}"},
        ping_interval=None,
    )
    await ws.recv()  # connected
    await ws.send(json.dumps({"type": "room:join", "id": "j", "payload": {"roomId": "bench"}}))
    while json.loads(await ws.recv()).get("id") != "j":
        pass
    return ws


async def _next(ws: Any, kind: str) -> dict[str, Any]:
    while True:
        frame: dict[str, Any] = json.loads(await ws.recv())
        if frame["type"] == kind:
            return frame


async def _measure(sender_node: FakeServer, receiver_node: FakeServer, n: int) -> list[float]:
    sender = await _user(sender_node, "sender")
    receiver = await _user(receiver_node, "receiver")
    samples = []
    run = time.monotonic_ns()  # message ids of their own (a reused id is a duplicate)
    try:
        for i in range(n + 20):
            frame = {
                "type": "chat:send",
                "id": f"{run}-{i}",
                "payload": {"roomId": "bench", "text": "x"},
            }
            start = time.perf_counter()
            await sender.send(json.dumps(frame))
            await _next(receiver, "chat:message")
            if i >= 20:  # warm-up left out
                samples.append((time.perf_counter() - start) * 1000)
            await _next(sender, "ack")
    finally:
        await sender.close()
        await receiver.close()
    return samples


def _row(name: str, samples: list[float]) -> str:
    return (
        f"  {name:<22} p50 {percentile(samples, 0.5):6.3f} ms   "
        f"p99 {percentile(samples, 0.99):6.3f} ms   ({len(samples)} messages)"
    )


async def main(n: int) -> None:
    async with FakeServer(**SETTINGS) as memory:
        print(_row("memory", await _measure(memory, memory, n)))
    async with RedisServer() as redis:
        one = FakeServer(**SETTINGS, redis_url=redis.url)
        two = FakeServer(**SETTINGS, redis_url=redis.url)
        async with one, two:
            print(_row("redis, same node", await _measure(one, one, n)))
            print(_row("redis, across nodes", await _measure(one, two, n)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="messages per case")
    asyncio.run(main(parser.parse_args().n))
