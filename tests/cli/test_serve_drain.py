"""``rtclient serve`` drains on SIGTERM and SIGINT: clients move on, nothing lost, exit 0."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections import Counter
from typing import Any

import pytest

from fake_server.auth import TokenAuthority
from rtclient import Backoff, Client, ConnectionState
from rtclient.testing import wait_until

from .conftest import ADMIN, SECRET

WAIT = 20.0
BATCH = 20
"""Messages on the wire at once: a drain always finds some in flight."""


async def _serve() -> tuple[asyncio.subprocess.Process, str]:
    """``rtclient serve --port 0`` with a known secret; its WebSocket URL."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "rtclient.cli", "serve", "--port", "0", "--log-level", "ERROR"),
        *("--secret", SECRET, "--admin-token", ADMIN, "--drain-timeout", "5"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    async with asyncio.timeout(WAIT):
        first = (await process.stdout.readline()).decode()
    assert first.startswith("fake_server listening: "), first
    return process, first.split()[2]


@pytest.mark.parametrize(
    ("transport", "sig"), [("websocket", signal.SIGTERM), ("socketio", signal.SIGINT)]
)
async def test_a_signal_drains_the_node_and_the_client_moves_on_with_nothing_lost(
    transport: str, sig: signal.Signals
) -> None:
    a, a_url = await _serve()
    b, b_url = await _serve()
    if transport == "socketio":
        a_url, b_url = (u.removesuffix("/ws").replace("ws://", "http://") for u in (a_url, b_url))
    try:
        token = TokenAuthority(SECRET, leeway=0.0).issue("alice", now=time.time())
        client = Client(
            [a_url, b_url],
            url_order="given",
            token=token,
            transport=transport,  # type: ignore[arg-type]
            backoff=Backoff(base=4.0, cap=8.0, jitter="equal", stable_after=0.1),
            ack_timeout=2.0,
        )
        mine: list[Any] = []
        client.on("chat:message", mine.append)
        async with client:
            await client.join("room")
            loop = asyncio.get_running_loop()
            up_since = loop.time()
            acks = [await client.send("room", f"m{i}") for i in range(10)]
            await wait_until(lambda: loop.time() - up_since > 0.4, timeout=WAIT)  # stable
            a.send_signal(sig)
            # Keep a stream of BATCH messages at a time going until the client moved,
            # and one round after that.
            sent = len(acks)
            async with asyncio.timeout(WAIT):
                while True:
                    moved = client.stats()["reconnects"] > 0  # the link to A ended
                    batch = [client.send("room", f"m{sent + i}") for i in range(BATCH)]
                    acks += await asyncio.gather(*batch)
                    sent += BATCH
                    if moved:
                        break
            await client.wait_for(ConnectionState.CONNECTED)
            assert client.url == b_url
            assert client.stats()["drains"] == 1
            assert client.stats()["attempts"] == 2  # A, then B at once: not A again
            await wait_until(lambda: len(mine) >= sent, timeout=WAIT)
        async with asyncio.timeout(WAIT):
            assert await a.wait() == 0
        assert a.stdout is not None
        said = (await a.stdout.read()).decode()
        assert "drained: every client left" in said
    finally:
        for process in (a, b):
            if process.returncode is None:
                process.terminate()
                await process.wait()
    assert not any(ack.duplicate for ack in acks)
    # Each message was stored by exactly one node: its event came from A's log or B's.
    stored = Counter(event.message_id for event in mine)
    assert sorted(stored) == sorted(ack.message_id for ack in acks)
    assert set(stored.values()) == {1}
    assert len({event.epoch for event in mine}) == 2  # both nodes took some
