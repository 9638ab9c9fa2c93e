"""The chaos soak: seeded random faults against bots on both transports, then the checker.

Every FaultProxy toxic and every FakeServer fault (restarts keep their log) hits four
bots in three rooms, two over raw WebSocket and two over Socket.IO, all through the
proxy. The run fails if anything was lost, doubled, reordered or skipped unannounced.

``RT_SOAK_SEED=<n>`` replays a run (the seed is printed first and is in every failure
message); ``RT_SOAK_SECONDS=<s>`` runs longer than the CI's 25 s of faults.
"""

from __future__ import annotations

import os
import random

import pytest

from rtclient.testing.chaos import FAULTS, Announced, Joined, run_soak

SEED = int(os.environ.get("RT_SOAK_SEED") or random.SystemRandom().randrange(1_000_000))
SECONDS = float(os.environ.get("RT_SOAK_SECONDS") or 25)


@pytest.mark.soak
@pytest.mark.timeout(SECONDS + 60)
async def test_chaos_soak() -> None:
    print(f"\nRT_SOAK_SEED={SEED} RT_SOAK_SECONDS={SECONDS:g}", flush=True)
    result = await run_soak(seed=SEED, seconds=SECONDS, rate=25.0, settle_timeout=20.0)
    summary = result.summary()
    print(summary)
    figures = result.figures
    assert result.report.ok, f"the checker found anomalies (replay: RT_SOAK_SEED={SEED})\n{summary}"
    assert result.settled, f"clients did not settle (RT_SOAK_SEED={SEED})\n{summary}"
    assert not result.leftover, f"clients left tasks behind (RT_SOAK_SEED={SEED})\n{summary}"
    assert figures.sent >= 2000 and figures.acked == figures.sent, summary
    assert sum(figures.faults.values()) >= 20, summary
    assert set(figures.faults) == set(FAULTS), f"not every fault ran\n{summary}"
    assert figures.reconnects >= 10, summary


@pytest.mark.soak
@pytest.mark.timeout(60)
async def test_a_new_epoch_is_announced_to_every_member() -> None:
    """keep_log=False loses data on purpose: the checker accepts it only where announced."""
    kinds = ("restart_new_epoch", "drop_connections", "lose_next_acks", "duplicate_next_events")
    result = await run_soak(seed=SEED, seconds=5, kinds=kinds, rate=20.0)
    summary = result.summary()
    assert result.ok, f"RT_SOAK_SEED={SEED}\n{summary}"
    assert result.figures.faults["restart_new_epoch"] >= 1, summary
    resets = result.figures.faults["restart_new_epoch"]
    epoch_gaps = [a for a in result.history.records if isinstance(a, Announced)]
    told = {(g.client, g.room) for g in epoch_gaps if g.reason == "epoch"}
    members = {(j.client, j.room) for j in result.history.records if isinstance(j, Joined)}
    assert told == members, f"{resets} epoch resets; told {sorted(told)}\n{summary}"
