"""The benchmark's server process: ``python -m benchmarks.server --secret S``.

A :class:`~fake_server.FakeServer` in a process of its own, so that the client's cost
is what the benchmarks measure. The CLI (``python -m fake_server``) has no flags for the
rate limit or the retention, so this launcher builds ``FakeServer(**overrides)``
itself: the rate limit and the retention are out of the way, logging is quiet and the
open-files limit is raised to its hard limit (1,000 idle clients).

It prints ``READY <port> <control port>`` once it listens, then serves until killed
(SIGTERM: a clean stop; SIGKILL: a crash, used by the restart case). The control port
takes one command per line on loopback TCP and answers one line:

- ``flood <room> <n> <text length>``: append ``n`` ``chat:message`` events to the
  room's log and push them to every member as fast as the sockets take them (raw
  WebSocket members get the pre-encoded frame written directly, Socket.IO members go
  through the hub) — answers ``OK <n> <seconds>``;
- ``drop``: the ``drop_connections`` fault (TCP abort, no close frame) — ``OK``;
- ``connections``: ``OK <authenticated connections>``;
- ``restart keep`` / ``restart fresh``: the ``restart`` fault (close every connection
  with 1012 and listen again), the event log kept or lost (a new epoch) — ``OK``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import logging
import resource
import signal
import time
from typing import Any

from fake_server import FakeServer
from fake_server.envelope import event
from fake_server.ws_peer import WsPeer

__all__ = ["OVERRIDES", "die_with_parent", "main", "raise_nofile"]

OVERRIDES: dict[str, Any] = {
    "rate_per_second": 1e9,
    "rate_burst": 1_000_000_000,
    "retention_count": 2_000_000,
    "dedupe_max": 2_000_000,
    "query_per_second": 1e9,
    "query_burst": 1_000_000_000,
    "max_syncs_in_flight": 1_000_000,
    "max_queued_frames": 10_000_000,
    "max_queued_bytes": 1 << 40,
    "max_connections_per_address": 1_000_000,
}
"""ServerConfig fields the benchmarks need: no rate limit, no pruning under a flood, no
cap on what is queued for a client or on the 1,000 idle clients from one address (the
client is what is measured; ``benchmarks.hostile_clients`` measures the server's limits)."""

TEXT = "On my way to the deploy review; the staging rollout looked fine, numbers in 10 min."


def die_with_parent() -> None:
    """Linux: get SIGTERM when the process that started us dies (no orphans left)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def raise_nofile() -> int:
    """Raise the soft open-files limit to the hard one; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def flood(server: FakeServer, room: str, n: int, text_length: int) -> float:
    """Append ``n`` messages to ``room`` and push each to its members; return seconds."""
    hub = server.hub
    text = (TEXT * (text_length // len(TEXT) + 1))[:text_length]
    members = list(hub.rooms.get(room, ()))
    raw = [c.peer for c in members if isinstance(c.peer, WsPeer)]
    start = time.perf_counter()
    for i in range(n):
        now = time.time()
        log_ = hub.store.for_append(room, now=now)
        payload = {
            "roomId": room,
            "eventId": log_.next_event_id(),
            "epoch": hub.epoch,
            "messageId": f"flood-{i}",
            "from": "flooder",
            "text": text,
            "timestamp": now,
        }
        log_.append(payload)
        envelope = event("chat:message", payload)
        frame = json.dumps(envelope, separators=(",", ":"))
        for conn in members:
            if isinstance(conn.peer, WsPeer):
                continue
            conn.peer.send(envelope)
        for peer in raw:
            if not peer.aborted:
                await peer.ws.send_str(frame)
        if not raw and i % 64 == 63:
            await asyncio.sleep(0)  # let the Socket.IO writers run
    return time.perf_counter() - start


async def control(
    server: FakeServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while line := await reader.readline():
            words = line.decode().split()
            try:
                if words[:1] == ["flood"]:
                    seconds = await flood(server, words[1], int(words[2]), int(words[3]))
                    answer = f"OK {words[2]} {seconds:.6f}"
                elif words == ["drop"]:
                    await server.drop_connections()
                    answer = "OK"
                elif words[:1] == ["restart"] and words[1:] in (["keep"], ["fresh"]):
                    await server.restart(keep_log=words[1] == "keep")
                    answer = "OK"
                elif words == ["connections"]:
                    answer = f"OK {server.connection_count()}"
                else:
                    answer = f"ERR unknown command {line.decode().strip()!r}"
            except Exception as exc:
                answer = f"ERR {type(exc).__name__}: {exc}"
            writer.write(answer.encode() + b"\n")
            await writer.drain()
    finally:
        writer.close()


async def serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    overrides = dict(OVERRIDES)
    if args.ping_interval is not None:
        overrides["ping_interval"] = args.ping_interval
    async with FakeServer(
        secret=args.secret, admin_token=args.admin_token, port=args.port, **overrides
    ) as server:
        ctl = await asyncio.start_server(
            lambda r, w: control(server, r, w), "127.0.0.1", args.control_port
        )
        ctl_port = ctl.sockets[0].getsockname()[1]
        print(f"READY {server.port} {ctl_port}", flush=True)
        async with ctl:
            await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="FakeServer for the benchmarks")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--control-port", type=int, default=0)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--admin-token", default=None)
    parser.add_argument("--ping-interval", type=float, default=None)
    args = parser.parse_args()
    die_with_parent()
    raise_nofile()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
