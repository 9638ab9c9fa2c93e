"""haproxy in front of the nodes: sticky by source, a dead node taken out, clients move."""

from __future__ import annotations

import functools
from typing import Literal

import aiohttp
import pytest

from rtclient import Client, ConnectionState
from rtclient.testing import Balancer, Cluster, wait_until
from rtclient.testing.balancer import haproxy_config
from rtclient.testing.plugin import CLIENT_DEFAULTS

TRANSPORTS: tuple[Literal["websocket", "socketio"], ...] = (
    "websocket",
    "socketio",
    "websocket",
    "socketio",
)

pytestmark = [pytest.mark.cluster, pytest.mark.rt_cluster(nodes=2, redis=False)]


def _all_moved(clients: list[Client], times: int) -> bool:
    return all(c.stats()["reconnects"] >= times for c in clients)


def test_the_config_is_sticky_by_source_and_checks_health() -> None:
    config = haproxy_config(
        host="127.0.0.1", port=1, stats_port=2, servers=[("127.0.0.1", 3), ("127.0.0.1", 4)]
    )
    assert "balance source" in config
    assert "option httpchk GET /health" in config
    assert "server node1 127.0.0.1:4 check" in config


async def test_clients_move_off_a_killed_node_then_off_a_draining_one(
    rt_cluster: Cluster, rt_balancer: Balancer
) -> None:
    clients = [
        Client(
            rt_balancer.url(transport),
            token=rt_cluster.token_provider(f"u{i}"),
            transport=transport,
            **CLIENT_DEFAULTS,
        )
        for i, transport in enumerate(TRANSPORTS)
    ]
    for client in clients:
        await client.connect()
    for moves, fault in enumerate(("kill", "drain"), start=1):
        counts = await rt_cluster.connections()
        busy = await rt_cluster.busiest()
        assert counts[busy] == 4, counts  # one source address: one node

        await (rt_cluster.kill(busy) if fault == "kill" else rt_cluster.drain(busy))
        await rt_balancer.wait_state(busy, "DOWN")
        await wait_until(functools.partial(_all_moved, clients, moves), 10.0)
        for client in clients:
            await client.join("lobby")
            assert (await client.send("lobby", fault)).event_id is not None
        counts = await rt_cluster.connections()
        assert counts[busy] is None and sum(c or 0 for c in counts) == 4, counts

        await rt_cluster.start_node(busy)
        await rt_balancer.wait_state(busy, "UP")
    for client in clients:
        await client.close()


async def test_a_refusing_node_is_passed_over(rt_cluster: Cluster, rt_balancer: Balancer) -> None:
    """A node that answers handshakes 503 (as a draining one does) is retried elsewhere."""
    token = rt_cluster.token_provider("probe")
    async with Client(rt_balancer.url(), token=token, **CLIENT_DEFAULTS):
        busy = await rt_cluster.busiest()
    headers = {"Authorization": f"Bearer {rt_cluster.admin_token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{rt_cluster.nodes[busy].http_url}/admin/faults/reject_handshakes",
            json={"n": 100, "status": 503, "retryAfter": 1},
            headers=headers,
        ) as response,
    ):
        assert response.status == 200
    async with Client(rt_balancer.url(), token=token, **CLIENT_DEFAULTS) as client:
        assert client.state is ConnectionState.CONNECTED
        counts = await rt_cluster.connections()
        assert counts[busy] == 0 and sum(c or 0 for c in counts) == 1, counts
