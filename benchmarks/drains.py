"""Time from a drain to the client running on another node: ``python -m benchmarks.drains``.

Two in-process FakeServers A and B (one secret). A client given ``[A, B]`` (in that
order, backoff base 1 s with equal jitter: any backoff would wait at least 0.5 s) has
been up on A for 0.15 s while sending, has 50 more messages on the wire, and A drains.
Measured per run: the time from ``A.drain()`` being called to the client's CONNECTED on
B, the connection attempts it made (2 is A then B), and how many acks were duplicates
(0: nothing was carried out twice). ``--runs N`` runs per transport (default 15).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from dataclasses import dataclass
from typing import Any

from fake_server import FakeServer
from rtclient import Backoff, Client, ConnectionState, StateChanged

BASE = 1.0
SECRET = "benchmarks-drains-" + "0123456789abcdef" * 3
TRANSPORTS = ("websocket", "aiohttp", "socketio")


@dataclass(frozen=True, slots=True)
class Run:
    seconds: float
    attempts: int
    duplicates: int


async def one(transport: str) -> Run:
    settings: dict[str, Any] = {"secret": SECRET, "rate_per_second": 1e6, "rate_burst": 10**6}
    async with FakeServer(**settings) as a, FakeServer(**settings) as b:
        socketio = transport == "socketio"
        urls = [s.sio_url if socketio else s.ws_url for s in (a, b)]
        client = Client(
            urls,
            url_order="given",
            token=a.issue_token("bench"),
            transport=transport,  # type: ignore[arg-type]
            backoff=Backoff(base=BASE, cap=8.0, jitter="equal", stable_after=0.1),
        )
        loop = asyncio.get_running_loop()
        on_b: asyncio.Future[float] = loop.create_future()

        def state(change: StateChanged) -> None:
            on = (change.endpoint or "") + "/"
            if change.new is ConnectionState.CONNECTED and f":{b.port}/" in on and not on_b.done():
                on_b.set_result(loop.time())

        client.on("state", state)
        async with client:
            await client.join("r")
            up = loop.time()
            while loop.time() - up < 0.15:  # stable on A, sending
                await client.send("r", "x")
            sends = [asyncio.create_task(client.send("r", f"m{i}")) for i in range(50)]
            started = loop.time()
            await a.drain(timeout=5.0)
            arrived = await asyncio.wait_for(on_b, 10.0)
            acks = await asyncio.wait_for(asyncio.gather(*sends), 10.0)
            duplicates = sum(ack.duplicate for ack in acks)
            return Run(arrived - started, client.stats()["attempts"], duplicates)


async def main(runs: int) -> list[str]:
    lines = [
        f"drain -> connected on the next node ({runs} runs each; backoff base {BASE:g} s, "
        f"equal jitter: a backoff would wait >= {BASE / 2:g} s)",
        "transport   p50 ms   max ms   attempts   duplicate acks",
    ]
    for transport in TRANSPORTS:
        results = [await one(transport) for _ in range(runs)]
        ms = sorted(r.seconds * 1000 for r in results)
        attempts = sorted({r.attempts for r in results})
        lines.append(
            f"{transport:<10} {statistics.median(ms):7.1f} {ms[-1]:8.1f}   "
            f"{','.join(map(str, attempts)):<8}   {sum(r.duplicates for r in results)}"
        )
    return lines


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.drains")
    parser.add_argument("--runs", type=int, default=15)
    for line in asyncio.run(main(parser.parse_args().runs)):
        print(line)
