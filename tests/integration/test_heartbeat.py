"""Dead links are noticed; RTT samples feed the quality level."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from fake_server import FakeServer
from rtclient import ConnectionState, QualityLevel
from rtclient.testing import wait_until

from .conftest import MakeClient


@pytest.fixture(params=["websocket", "aiohttp"])
def transport_name(request: pytest.FixtureRequest) -> str:
    """Every test in this module runs over both raw WebSocket transports."""
    return str(request.param)


INTERVAL, TIMEOUT = 0.1, 0.3


async def test_frozen_server_is_detected_within_interval_plus_timeout(
    server: FakeServer, make_client: MakeClient
) -> None:
    alice = await make_client(
        "alice",
        rooms=("lobby",),
        ping_interval=INTERVAL,
        ping_timeout=TIMEOUT,
        connect_timeout=0.5,
    )
    await wait_until(lambda: alice.quality.samples >= 2)
    await server.pause()
    frozen_at = time.perf_counter()
    pending = asyncio.create_task(alice.send("lobby", "sent into the frozen link"))
    await alice.wait_for(ConnectionState.RECONNECTING, timeout=5)
    detected = time.perf_counter() - frozen_at
    assert alice.stats()["dead_links"] == 1
    assert alice.quality.level is QualityLevel.POOR
    # The promise: within one interval plus the timeout (slack for a loaded machine).
    assert detected <= INTERVAL + TIMEOUT + 1.0, detected
    print(
        f"\n[heartbeat] frozen peer detected after {detected:.3f}s "
        f"(bound {INTERVAL + TIMEOUT:.1f}s)"
    )
    await server.resume()
    ack = await asyncio.wait_for(pending, 10)
    assert [e["messageId"] for e in server.room_events("lobby")] == [ack.message_id]


@pytest.mark.parametrize("transport_name", ["websocket"])  # 5 s; aiohttp's RTT: its own test
async def test_quality_levels_follow_latency_with_jitter_without_flapping(
    server: FakeServer, make_client: MakeClient
) -> None:
    alice = await make_client(
        "alice", connect=False, ping_interval=0.03, ping_timeout=2.0, quality_window=5
    )
    seen: list[QualityLevel] = []
    alice.on("quality", lambda change: seen.append(change.new))
    await alice.connect()
    rng = random.Random(4)
    for base_ms in (0, 150, 400, 0):
        for _ in range(8):  # eight heartbeats per step, each at a new ±20 % jitter
            await server.set_latency(base_ms * rng.uniform(0.8, 1.2))
            samples = alice.quality.samples
            await wait_until(lambda n=samples: alice.quality.samples > n, timeout=5)
    assert seen == [
        QualityLevel.GOOD,
        QualityLevel.DEGRADED,
        QualityLevel.POOR,
        QualityLevel.GOOD,
    ]
    snapshot = alice.quality
    assert snapshot.p50 is not None and snapshot.p50 < 0.1
    assert snapshot.srtt is not None and snapshot.rto is not None
