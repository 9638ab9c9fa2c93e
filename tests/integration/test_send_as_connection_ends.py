"""A send as the connection ends (found by ``benchmarks.longrun``, issue 19)."""

from __future__ import annotations

import asyncio

from fake_server import FakeServer
from rtclient.testing import wait_until

from .conftest import MakeClient


async def test_a_send_while_the_connection_ends_stays_queued(
    server: FakeServer, make_client: MakeClient
) -> None:
    """The connection's task group is finishing when a caller kicks the writer (found by
    ``benchmarks.longrun``: send() raised RuntimeError "TaskGroup is finished")."""
    client = await make_client("alice", rooms=("lobby",), ping_interval=None)
    async with asyncio.TaskGroup() as finished:
        pass
    group, client._hook_group = client._hook_group, finished  # type: ignore[attr-defined]
    try:
        client.send_nowait("lobby", "queued as the link ends")  # kicks the writer
        assert client.stats()["queued"] == 1
    finally:
        client._hook_group = group  # type: ignore[attr-defined]
    before = client.stats()["reconnects"]
    await server.drop_connections()  # the next connection sends it
    await wait_until(lambda: client.stats()["reconnects"] > before)
    await wait_until(lambda: client.stats()["queued"] == 0 and client.stats()["acked"] >= 1)
