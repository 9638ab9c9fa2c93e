"""What every worker kind measures with: the timer, the flood-and-count receive, idle memory.

Used by the rtclient kinds (``benchmarks.worker``) and the bare baselines
(``benchmarks.bare``) alike, so that both are timed the same way.
"""

from __future__ import annotations

import asyncio
import gc
import os
import resource
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .server import TEXT
from .spec import WorkerResult, WorkerSpec

__all__ = ["ROOM", "RUN", "WARMUP", "Counter", "idle", "receive", "result", "timer"]

ROOM = "bench"
WARMUP = 200
RUN = uuid.uuid4().hex[:12]
"""This worker's own prefix for message ids."""

Start = tuple[float, float]


def timer() -> Start:
    """Wall and CPU clocks now; :func:`result` takes the difference."""
    return time.perf_counter(), time.process_time()


def result(count: int, start: Start) -> WorkerResult:
    wall, cpu = time.perf_counter() - start[0], time.process_time() - start[1]
    return {"count": count, "seconds": wall, "cpu": cpu}


# -- receive ------------------------------------------------------------------------------


async def _flood(spec: WorkerSpec, n: int) -> float:
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


class Counter:
    """Counts deliveries; sets ``done`` at ``n``."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.seen = 0
        self.done = asyncio.Event()

    def hit(self) -> None:
        self.seen += 1
        if self.seen == self.n:
            self.done.set()


async def receive(spec: WorkerSpec, current: list[Counter]) -> WorkerResult:
    """Warm up, then flood ``n`` messages; time the first to the last delivery.

    The client under test calls ``current[-1].hit()`` for each ``chat:message``.
    """
    n = spec["n"]
    current.append(Counter(WARMUP))
    await _flood(spec, WARMUP)
    await asyncio.wait_for(current[-1].done.wait(), 30.0)
    counter = Counter(n)
    current.append(counter)
    # From the request, not from the first delivery: a client that reads ahead of its
    # handlers would otherwise hide part of its work before the first delivery.
    start = timer()
    flood = asyncio.create_task(_flood(spec, n))
    await asyncio.wait_for(counter.done.wait(), 120.0)
    got = result(n, start)
    got["server_seconds"] = await flood
    return got


# -- idle memory --------------------------------------------------------------------------


def _rss() -> int:
    """Resident set size now, in bytes (Linux /proc; ru_maxrss elsewhere)."""
    try:
        fields = Path("/proc/self/statm").read_text().split()
        return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


async def idle(spec: WorkerSpec, connect_one: Callable[[int], Awaitable[Any]]) -> WorkerResult:
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
    start = timer()
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
    tasks = len(asyncio.all_tasks())
    got = result(clients, start)
    got["rss_bytes"] = rss1 - rss0
    got["traced_bytes"] = traced1 - traced0
    got["connected_in"] = connected_in
    got["tasks"] = tasks
    got["held"] = len(held)
    if before is not None:
        # Where the per-client bytes were allocated: the biggest sites, by line.
        after = tracemalloc.take_snapshot()
        stats = after.compare_to(before, "lineno")
        got["sites"] = [
            (_site(stat.traceback[0].filename, stat.traceback[0].lineno), stat.size_diff)
            for stat in stats[:25]
        ]
        tracemalloc.stop()
    return got


def _site(filename: str, lineno: int) -> str:
    for marker in ("site-packages/", "/lib/python3.", "/work/main/"):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
            if marker == "/lib/python3.":
                filename = filename.split("/", 1)[1]
            break
    return f"{filename}:{lineno}"
