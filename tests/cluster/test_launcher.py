"""The cluster launcher: node processes start healthy, die, come back, drain, stop."""

from __future__ import annotations

import os

import pytest

from rtclient import Client
from rtclient.testing import Balancer, Cluster, NodeFailed
from rtclient.testing.plugin import CLIENT_DEFAULTS

pytestmark = pytest.mark.cluster


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.rt_cluster(nodes=2, redis=False)
async def test_a_node_killed_comes_back_on_its_url_and_a_drained_one_exits_0(
    rt_cluster: Cluster,
) -> None:
    assert [await rt_cluster.health(i) is not None for i in range(2)] == [True, True]
    url = rt_cluster.urls()[0]
    pid = rt_cluster.nodes[0].pid
    await rt_cluster.kill(0)
    assert rt_cluster.running() == [1]
    assert await rt_cluster.health(0) is None
    await rt_cluster.restart(0)
    assert rt_cluster.nodes[0].pid != pid
    async with Client(url, token=rt_cluster.token_provider("alice"), **CLIENT_DEFAULTS) as c:
        await c.join("lobby")
        ack = await c.send("lobby", "hi")
    assert ack.event_id == 1

    await rt_cluster.drain(1)
    assert rt_cluster.running() == [0]
    with pytest.raises(NodeFailed, match="not running"):
        await rt_cluster.drain(1)


async def test_a_node_that_cannot_start_stops_everything() -> None:
    cluster = Cluster(1, redis=False, node_args=["--no-such-flag"])
    with pytest.raises(NodeFailed, match="no-such-flag"):
        await cluster.start()
    assert cluster.running() == []


async def test_a_failure_inside_the_cluster_stops_every_process(rt_haproxy: str) -> None:
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="boom"):
        async with Cluster(1, redis=False) as cluster, Balancer(cluster) as balancer:
            pids = [pid for node in cluster.nodes if (pid := node.pid) is not None]
            assert balancer._process is not None
            pids.append(balancer._process.pid)
            assert len(pids) == 2 and all(_alive(pid) for pid in pids)
            raise RuntimeError("boom")
    assert not any(_alive(pid) for pid in pids)
