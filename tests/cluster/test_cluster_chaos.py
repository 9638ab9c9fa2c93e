"""The chaos checker over a cluster: three ``rtclient serve --redis`` nodes on one
redis-server, bots on both transports, nodes SIGKILLed, restarted and drained while the
bots send (and, with every URL, a node cut off from Redis and Redis restarted with its
data). Every message must be acknowledged and delivered exactly once, in order, with no
gap, to clients given every node's URL, and to clients given only haproxy's.

``RT_SOAK_SEED=<n>`` replays a run (the seed is printed first and is in every failure
message); ``RT_CLUSTER_SECONDS=<s>`` runs the faults longer than the CI's 10 s.
"""

from __future__ import annotations

import os
import random

import pytest

from rtclient.testing import Balancer, Cluster
from rtclient.testing.chaos import LabConfig, SoakResult, run_cluster_soak

pytestmark = pytest.mark.cluster

SEED = int(os.environ.get("RT_SOAK_SEED") or random.SystemRandom().randrange(1_000_000))
SECONDS = float(os.environ.get("RT_CLUSTER_SECONDS") or 10)


def _config() -> LabConfig:
    # Kills and drains close the clients' TCP connections, so no fault here needs the
    # heartbeat to be noticed: a tolerant one keeps a loaded machine from adding
    # reconnects of its own.
    return LabConfig(
        bots=4, rooms=3, seed=SEED, ping_interval=0.5, ping_timeout=2.0, ack_timeout=2.0
    )


def _judge(result: SoakResult, *kinds: str) -> None:
    summary = f"RT_SOAK_SEED={SEED}\n{result.summary()}"
    print(summary)
    figures = result.figures
    assert result.report.ok, f"the checker found anomalies\n{summary}"
    assert result.report.gaps == 0, (
        f"a gap was announced: something could not be replayed\n{summary}"
    )
    assert result.settled, f"clients did not settle\n{summary}"
    assert not result.leftover, f"clients left tasks behind\n{summary}"
    assert figures.sent >= 200 and figures.acked == figures.sent, summary
    assert all(figures.faults[kind] >= 1 for kind in kinds), summary
    # Every kill and drain hits the node with the most clients: each moves one at least.
    assert figures.reconnects >= figures.faults["kill"] + figures.faults["drain"], summary


@pytest.mark.timeout(SECONDS + 50)
async def test_clients_given_every_url_lose_nothing_as_nodes_die_and_drain(
    rt_cluster: Cluster,
) -> None:
    config = _config()
    kinds = ("kill", "drain", "partition", "restart_redis")
    result = await run_cluster_soak(
        rt_cluster, seed=SEED, seconds=SECONDS, config=config, kinds=kinds
    )
    _judge(result, *kinds)


@pytest.mark.timeout(SECONDS + 50)
async def test_clients_behind_haproxy_lose_nothing_as_nodes_die_and_drain(
    rt_cluster: Cluster, rt_balancer: Balancer
) -> None:
    config = _config()
    result = await run_cluster_soak(
        rt_cluster,
        seed=SEED,
        seconds=SECONDS,
        config=config,
        balancer=rt_balancer,
        kinds=("kill", "drain"),
    )
    _judge(result, "kill", "drain")
