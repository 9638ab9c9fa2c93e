"""The cluster launcher: node processes start healthy, die, come back, drain, stop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import pytest
from aiohttp import web

from rtclient import Client
from rtclient.testing import Balancer, Cluster, NodeFailed, NodeProcess, wait_until
from rtclient.testing.plugin import CLIENT_DEFAULTS, need_program

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


async def test_another_server_on_a_nodes_port_is_not_taken_for_the_node(tmp_path: Path) -> None:
    """A port picked free can be taken by someone else before the node binds it (a
    restart's downtime, another test run): that server's /health answering 200 must
    not pass for the node being ready; the node (which cannot bind) fails to start."""

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "connections": 0})

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        node = NodeProcess(
            0,
            host="127.0.0.1",
            port=port,
            argv=["--host", "127.0.0.1", "--port", str(port), "--ephemeral"],
            log_path=tmp_path / "node.log",
        )
        try:
            with pytest.raises(NodeFailed, match="while starting"):
                await node.start()
        finally:
            await node.kill()
        assert not node.running
    finally:
        await runner.cleanup()


def _gone(pid: int) -> bool:
    """The process ended (a zombie not yet reaped by whoever adopted it counts)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return not _alive(pid)
    return "\nState:\tZ" in status


_HOLDER = """
import asyncio, sys
from pathlib import Path
from rtclient.testing import Cluster

async def main() -> None:
    cluster = Cluster(1, log_dir=Path(sys.argv[1]))
    await cluster.start()
    print(cluster.redis._process.pid, cluster.nodes[0].pid, flush=True)
    await asyncio.Event().wait()  # until the test kills this process

asyncio.run(main())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
async def test_a_killed_test_runner_leaves_neither_a_node_nor_redis_behind(
    tmp_path: Path,
) -> None:
    need_program("redis-server")
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _HOLDER, str(tmp_path), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert holder.stdout is not None
        line = await asyncio.wait_for(holder.stdout.readline(), 60)
        pids = [int(pid) for pid in line.split()]
        assert len(pids) == 2, line
    finally:
        holder.kill()  # no teardown runs: SIGKILL
        await holder.wait()
    try:
        await wait_until(lambda: all(_gone(pid) for pid in pids), timeout=10)
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
