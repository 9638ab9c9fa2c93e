"""Memory through reconnects: ``python -m benchmarks.reconnects`` (``--cycles N``, ``--only ROW``).

The server runs in its own process (``python -m benchmarks.server``). Each row is a
worker process of its own (``--worker SPEC``) holding a sender and a receiver client in
one room. Per cycle the sender sends 5 messages (each awaited to its ack), the receiver
gets all 5, then the server drops every connection (TCP abort); every 10th cycle it
restarts instead, with its log kept. The worker samples its own RSS, the glibc heap
(``mallinfo2``: bytes in use and bytes free inside the heap), asyncio tasks, live Python
objects (after ``gc.collect()``) and open file descriptors: after a quarter of the run
(the warm-up) and at the end. Growth per cycle is (end - quarter) / (cycles after it).

The bare row is a plain ``websockets`` client making the same number of connections as
the rtclient rows make reconnects (two clients: 2 per cycle), with permessage-deflate
(websockets' default), each reading its welcome and closing.

``--trim`` calls ``malloc_trim(0)`` before each sample: heap that is free but not
returned to the system (fragmentation) goes; a leak stays. ``MALLOC_MMAP_THRESHOLD_``
in the environment moves zlib's allocations out of the heap (another way to tell).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from .harness import ROOT, BenchError, ServerProcess, Token
from .process import sample

__all__ = ["ROWS", "describe", "main", "run_row"]

ROOM = "reconnects"
PER_CYCLE = 5
RESTART_EVERY = 10
CYCLE_TIMEOUT = 30.0
STABLE_AFTER = 0.01
"""The clients' ``Backoff.stable_after``; each cycle's connections are this old when cut."""
FIRST_DELAY = 0.002
"""The clients' ``Backoff.first_delay``: the longest wait after a stable connection's loss."""

ROWS: dict[str, dict[str, Any]] = {
    "websocket+deflate": {"kind": "rt", "transport": "websocket", "compression": True},
    "websocket": {"kind": "rt", "transport": "websocket", "compression": False},
    "aiohttp+deflate": {"kind": "rt", "transport": "aiohttp", "compression": True},
    "aiohttp": {"kind": "rt", "transport": "aiohttp", "compression": False},
    "bare websockets+deflate": {"kind": "bare"},
}


# -- the worker (a process of its own) --------------------------------------------------


async def _control(port: int, line: str) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(line.encode() + b"\n")
        answer = await reader.readline()
    finally:
        writer.close()
    if not answer.startswith(b"OK"):
        raise BenchError(f"control {line!r}: {answer.decode().strip()}")


class _Up:
    """A client's connections as its ``state`` events tell them: how many went live, since when.

    ``since`` is the loop time of the last welcome (the move to RECOVERING): the
    reconnect policy counts a connection's age from its welcome too, and a handler runs
    after the move, so the age measured here is never more than the policy's.
    """

    def __init__(self, client: Any) -> None:
        self.since: float | None = None
        self.live = 0
        self.changed = asyncio.Event()
        self.longest_wait = 0.0
        """The longest delay before a reconnect the client announced (RECONNECTING)."""
        client.on("state", self._on_state)

    def _on_state(self, change: Any) -> None:
        from rtclient import ConnectionState

        if change.new is ConnectionState.RECOVERING:
            self.since = asyncio.get_running_loop().time()
        elif change.new is ConnectionState.CONNECTED:
            self.live += 1
            self.changed.set()
        elif change.new is ConnectionState.RECONNECTING:
            self.since = None
            self.longest_wait = max(self.longest_wait, change.delay or 0.0)

    async def live_after(self, count: int) -> None:
        """Wait until a connection after the ``count``-th went live (CONNECTED)."""
        while self.live <= count:
            self.changed.clear()
            await self.changed.wait()

    async def stable(self, seconds: float) -> None:
        """Wait until the live connection has been up ``seconds`` (time, not a state)."""
        assert self.since is not None, "not connected"
        await asyncio.sleep(max(0.0, self.since + seconds - asyncio.get_running_loop().time()))


async def _rt_worker(spec: dict[str, Any]) -> dict[str, Any]:
    from rtclient import Backoff, Client

    token = Token()
    url, cycles = spec["url"], spec["cycles"]
    options: dict[str, Any] = {
        "transport": spec["transport"],
        "compression": spec["compression"],
        "backoff": Backoff(base=0.05, cap=0.5, first_delay=FIRST_DELAY, stable_after=STABLE_AFTER),
    }
    sender = Client(url, token=lambda: token("sender"), **options)
    receiver = Client(url, token=lambda: token("receiver"), **options)
    ups = (_Up(sender), _Up(receiver))
    got: list[str] = []
    arrived = asyncio.Event()

    def on_message(event: Any) -> None:
        if event.data.get("from") == "sender":
            got.append(event.data["text"])
            if len(got) % PER_CYCLE == 0:
                arrived.set()

    receiver.on("chat:message", on_message)
    samples: dict[str, dict[str, int]] = {}
    curve: list[int] = []
    drop_wait = 0.0  # the longest reconnect delay after a drop (the server stays up)
    async with sender, receiver:
        await receiver.join(ROOM)
        await sender.join(ROOM)
        samples["start"] = sample(trim=spec["trim"])
        for cycle in range(cycles):
            async with asyncio.timeout(CYCLE_TIMEOUT):
                for i in range(PER_CYCLE):
                    await sender.send(ROOM, f"{cycle}.{i}")
                while len(got) < (cycle + 1) * PER_CYCLE:
                    arrived.clear()
                    await arrived.wait()
                # Every cut is of a stable connection, as for a bot that runs for weeks: a
                # connection cut younger than stable_after counts as a failed attempt, and
                # the client that went live last (its peer's messages waiting) would be cut
                # within milliseconds every cycle, its backoff growing to the cap (~0.2 s
                # of idle wait a cycle at low load; ~2.5 min a row in CI).
                for up in ups:
                    await up.stable(STABLE_AFTER)
                before = [up.live for up in ups]
                for up in ups:
                    up.longest_wait = 0.0
                fault = "restart keep" if cycle % RESTART_EVERY == RESTART_EVERY - 1 else "drop"
                await _control(spec["control_port"], fault)
                for up, count in zip(ups, before, strict=True):
                    await up.live_after(count)
                if fault == "drop":
                    drop_wait = max(drop_wait, *(up.longest_wait for up in ups))
            if cycle + 1 == cycles // 4:
                samples["quarter"] = sample(trim=spec["trim"])
            if (cycle + 1) % max(1, cycles // 20) == 0:
                curve.append(sample(trim=spec["trim"])["rss"])
        samples["end"] = sample(trim=spec["trim"])
    expected = [f"{c}.{i}" for c in range(cycles) for i in range(PER_CYCLE)]
    firsts = list(dict.fromkeys(got))
    return {
        "samples": samples,
        "curve": curve,
        "lost": len(set(expected) - set(got)),
        "duplicated": len(got) - len(set(got)),
        "reordered": firsts != [text for text in expected if text in set(firsts)],
        "connections": 2 * cycles,
        "drop_wait": drop_wait,
    }


async def _bare_worker(spec: dict[str, Any]) -> dict[str, Any]:
    import websockets

    token = Token()
    connections = spec["cycles"] * 2
    headers = {"Authorization": f"Bearer {token('bare')}"}
    samples: dict[str, dict[str, int]] = {"start": sample(trim=spec["trim"])}
    curve: list[int] = []
    for n in range(connections):
        async with websockets.connect(spec["url"], additional_headers=headers) as ws:
            await ws.recv()  # the welcome
        if n + 1 == connections // 4:
            samples["quarter"] = sample(trim=spec["trim"])
        if (n + 1) % max(1, connections // 20) == 0:
            curve.append(sample(trim=spec["trim"])["rss"])
    samples["end"] = sample(trim=spec["trim"])
    return {
        "samples": samples,
        "curve": curve,
        "lost": 0,
        "duplicated": 0,
        "reordered": False,
        "connections": connections,
    }


def _worker(spec: dict[str, Any]) -> dict[str, Any]:
    run = _rt_worker if spec["kind"] == "rt" else _bare_worker
    return asyncio.run(run(spec))


# -- the driver ---------------------------------------------------------------------------


async def run_row(
    server: ServerProcess,
    row: str,
    cycles: int,
    *,
    trim: bool = False,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run one row's worker against ``server``; return its figures (with growth per cycle)."""
    spec = {**ROWS[row], "url": server.ws_url, "control_port": server.control_port}
    spec.update(cycles=cycles, trim=trim)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.reconnects",
        "--worker",
        json.dumps(spec),
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60.0 + cycles * 2.0)
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise BenchError(f"worker {row} failed:\n{err.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    quarter, end = result["samples"]["quarter"], result["samples"]["end"]
    after = result["connections"] * 3 / 4 / (2 if ROWS[row]["kind"] == "rt" else 1)
    result["row"] = row
    result["cycles"] = cycles
    result["rss_per_cycle"] = (end["rss"] - quarter["rss"]) / after
    if "heap_used" in end:
        result["heap_used_per_cycle"] = (end["heap_used"] - quarter["heap_used"]) / after
    return result


def describe(result: dict[str, Any]) -> str:
    """One line of the table."""
    s = result["samples"]
    q, e = s["quarter"], s["end"]
    unit = "connection" if ROWS[result["row"]]["kind"] == "bare" else "cycle"
    heap = (
        f" heap in use {result['heap_used_per_cycle'] / 1024:+.2f} KiB/{unit},"
        f" heap free {s['start']['heap_free'] / 2**20:.2f}->{e['heap_free'] / 2**20:.2f} MiB"
        if "heap_used_per_cycle" in result
        else ""
    )
    return (
        f"{result['row']:<24} cycles={result['cycles']:<5} lost/dup={result['lost']}/"
        f"{result['duplicated']} tasks {q['tasks']}->{e['tasks']} objects {q['objects']}->"
        f"{e['objects']} fds {q['fds']}->{e['fds']} RSS {q['rss'] / 2**20:.1f}->"
        f"{e['rss'] / 2**20:.1f} MiB: {result['rss_per_cycle'] / 1024:+.2f} KiB/{unit}{heap}"
    )


async def _drive(args: argparse.Namespace) -> int:
    env = dict(kv.split("=", 1) for kv in args.env)
    async with ServerProcess() as server:
        for row in args.only or list(ROWS):
            result = await run_row(server, row, args.cycles, trim=args.trim, env=env)
            print(describe(result), flush=True)
            if args.json:
                print(json.dumps(result), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cycles", type=int, default=1500)
    parser.add_argument("--only", action="append", choices=list(ROWS))
    parser.add_argument("--trim", action="store_true", help="malloc_trim(0) before samples")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for workers")
    parser.add_argument("--json", action="store_true", help="print each row's figures")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))), flush=True)
        return 0
    return asyncio.run(_drive(args))


if __name__ == "__main__":
    sys.exit(main())
