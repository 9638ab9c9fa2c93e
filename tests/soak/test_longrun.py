"""The short form of ``python -m benchmarks.longrun`` ("a week in an hour"): about 65 s.

Bots on raw WebSocket and Socket.IO chat in four rooms through every fault of the
chaos catalogue (restarts with and without the log among them) with tokens that
expire every 4 s; the run is cut into segments, each settled and judged by the chaos
checker. Nothing may be lost, doubled, reordered or skipped unannounced, and from the
end of the first segment (the warm-up) to the end the process's C heap in use may grow
by less than an eighth of one permessage-deflate context pair per reconnect
(``benchmarks.process.context_size()``, ~190 KiB: a leak of one context per connection
would exceed it eight times over), its RSS by less than a quarter; the clients' tasks
and the fds may not grow.

The aiohttp transport is left out here. It used to stop for good with ``ProtocolError:
not a WebSocket server: Bad status line`` (a blackhole swallowed the 101 and the next
restart's close frame was read as the handshake response; found by this run, issue 19,
fixed and covered by ``tests/integration/test_aiohttp_edges.py``); it has not been run
at this length since.
"""

from __future__ import annotations

import os

import pytest

from benchmarks.longrun import run
from benchmarks.process import context_size

SECONDS = float(os.environ.get("RT_LONGRUN_SECONDS") or 60)
BOUND = context_size() / 8


@pytest.mark.soak
@pytest.mark.timeout(SECONDS + 240)
async def test_a_week_in_a_minute() -> None:
    result = await run(
        seconds=SECONDS,
        segment=25,
        aiohttp=False,
        # Server tables small enough to be full after the warm-up segment.
        server={"retention_count": 200, "dedupe_max": 2_000},
    )
    summary = result.summary()
    print(f"\n{summary}\nbound: {BOUND / 1024:.1f} KiB per reconnect")
    assert result.ok, summary
    assert sum(result.faults.values()) >= 50 and result.segments >= 2, summary
    assert result.acked == result.sent >= 2_000, summary
    assert result.in_band_refreshes >= 10 and result.token_refreshes >= 1, summary
    assert result.reconnects_after_warmup >= 50, summary
    assert result.growth_per_reconnect("heap_used") < BOUND, summary
    # RSS also holds the in-process server's Python objects (its engine.io sessions
    # linger until their ping timeout): a looser bound, still under the ~58 KiB a used
    # context leaked per connection keeps resident (measured with a leak put in).
    assert result.growth_per_reconnect("rss") < 2 * BOUND, summary
    assert result.end["client_tasks"] <= result.start["client_tasks"] + 3, summary
    assert result.end["fds"] <= result.start["fds"] + 5, summary
