"""``rtclient serve --redis`` keeps the bound it prints for a drain, whatever its clients
and its Redis do meanwhile."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
import websockets

from fake_server.auth import TokenAuthority
from rtclient.testing.cluster_node import die_with_parent
from rtclient.testing.redis_server import RedisServer

from ..server.conftest import SECRET

pytestmark = pytest.mark.cluster

CLIENTS = 60
SILENT = 20
"""Clients that stop reading: they never answer the close."""
BUSY = 20
"""Clients with a full lane of requests waiting for Redis when the drain starts."""
WAIT = 30.0


async def _serve(redis_url: str) -> tuple[asyncio.subprocess.Process, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "rtclient.cli", "serve", "--port", "0", "--log-level", "ERROR"),
        *("--secret", SECRET, "--admin-token", "a", "--redis", redis_url),
        *("--drain-timeout", "1", "--max-connections-per-address", "1000"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        preexec_fn=die_with_parent(),
    )
    assert process.stdout is not None
    async with asyncio.timeout(WAIT):
        first = (await process.stdout.readline()).decode()
    assert first.startswith("fake_server listening: "), first
    return process, first.split()[2]


async def test_a_drain_ends_within_its_printed_bound_with_silent_clients_and_redis_stuck(
    redis: RedisServer,
) -> None:
    process, url = await _serve(redis.url)
    assert process.stdout is not None
    auth = TokenAuthority(SECRET, leeway=0.0)
    clients: list[Any] = []
    admin = aioredis.Redis.from_url(redis.url)
    try:
        for n in range(CLIENTS):
            token = auth.issue(f"u{n}", now=time.time())
            ws = await websockets.connect(
                url, additional_headers={"Authorization": f"Bearer {token}"}, ping_interval=None
            )
            clients.append(ws)
            await ws.recv()  # the welcome
            join = {"type": "room:join", "id": "j", "payload": {"roomId": f"r{n}"}}
            await ws.send(json.dumps(join))
            while (reply := json.loads(await ws.recv())).get("id") != "j":
                pass
            assert reply["payload"]["success"] is True, reply
        for ws in clients[:SILENT]:
            ws.transport.pause_reading()
        # Redis stops answering: the busy clients' requests wait at it, their lanes fill.
        await admin.execute_command("CLIENT", "PAUSE", "60000", "ALL")
        for n, ws in enumerate(clients[SILENT : SILENT + BUSY]):
            for k in range(80):
                send = {"type": "chat:send", "id": f"m{k}", "payload": {"roomId": f"r{n}"}}
                send["payload"]["text"] = "x"
                await ws.send(json.dumps(send))
        process.send_signal(signal.SIGTERM)
        began = time.monotonic()
        async with asyncio.timeout(WAIT):
            while not (line := (await process.stdout.readline()).decode()).startswith("draining"):
                assert line, "the process ended without draining"
            status = await process.wait()
        took = time.monotonic() - began
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        for ws in clients:
            ws.transport.abort()
        await admin.aclose()
    match = re.search(r"at most ([\d.]+) s", line)
    assert match, line
    assert status == 0
    # The bound runs from the "draining" line; 1 s for the signal to get there.
    assert took <= float(match.group(1)) + 1.0, (took, line)


def test_the_drain_bound_holds_even_when_the_event_loop_is_stuck() -> None:
    """The last resort: a thread ends the process once the bound has passed."""
    import subprocess

    code = (
        "import threading; from fake_server.cli import _Watchdog; _Watchdog().arm(0.2); "
        "threading.Event().wait()"  # a loop stuck for good: only the watchdog ends it
    )
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=WAIT, check=False
    )
    assert done.returncode == 0
    assert b"drain overran 0.2 s: exiting now" in done.stdout
    assert time.monotonic() - began < WAIT
