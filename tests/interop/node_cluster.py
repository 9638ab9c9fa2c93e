"""Two (or more) Node.js socket.io nodes on one redis-server, each behind a FaultProxy.

The nodes run cluster-node.js (@socket.io/redis-streams-adapter, connection state
recovery on). Clients reach a node through its proxy (``node.proxy_url``), so a test can
cut one link; the tests themselves talk to a node's control endpoints directly
(``node.url``), and to Redis with ``redis.asyncio``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis

from rtclient.testing import FaultProxy, ResetPeer, ToxicHandle
from rtclient.testing.redis_server import RedisServer

from .conftest import HERE, NodeServer

START_TIMEOUT = 20.0
SESSION_PREFIX = "sio:session:"  # the adapter's default sessionKeyPrefix
STREAM = "socket.io"  # the adapter's default streamName


class ClusterNode(NodeServer):
    """A running cluster-node.js: control endpoints on ``url``, clients on ``proxy_url``."""

    def __init__(
        self, process: asyncio.subprocess.Process, port: int, name: str, proxy: FaultProxy
    ) -> None:
        super().__init__(process, port)
        self.name = name
        self.proxy = proxy
        self.proxy_url = proxy.url("http")

    def unreachable(self) -> ToxicHandle[ResetPeer]:
        """Reset every connection through the proxy (RST to both ends): the live ones now,
        new ones as they arrive, until the handle is removed (or its ``with`` ends).

        Unlike ``proxy.down()``, the node's live links are reset (RST to both ends)
        rather than closed, and new connections are accepted and then reset.
        """
        return self.proxy.reset_peer()

    async def cut(self) -> None:
        """Reset the live connections through the proxy; new ones pass again after."""
        with self.unreachable():
            async with asyncio.timeout(START_TIMEOUT):
                await self.proxy.wait_connections(0)

    async def refuse(self, refuse: bool = True) -> None:
        """Answer every new Socket.IO request with HTTP 503 (live connections stay)."""
        assert await self.post("/control/refuse", {"refuse": refuse}) == {"refusing": refuse}

    async def has_refused(self) -> bool:
        """Whether this node has answered a Socket.IO request with 503 yet."""
        return int((await self.state())["refused"]) > 0

    async def emit(self, room: str, event: str, data: Any) -> None:
        """``io.to(room).emit(event, data)`` on this node (returns before the XADD)."""
        assert await self.post("/control/emit", {"room": room, "event": event, "data": data})

    async def kill(self) -> None:
        """SIGKILL: the node persists nothing, its clients see their links close."""
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()


class NodeCluster:
    """The redis-server, the nodes (by name) and a ``redis.asyncio`` client on the Redis."""

    def __init__(self, redis_server: RedisServer) -> None:
        self.redis_server = redis_server
        self.redis: aioredis.Redis = aioredis.from_url(redis_server.url)
        self.nodes: dict[str, ClusterNode] = {}

    def __getitem__(self, name: str) -> ClusterNode:
        return self.nodes[name]

    async def start_node(self, name: str, **options: int) -> ClusterNode:
        """Start cluster-node.js ``name`` (options: max_disconnection_ms, ping_interval_ms…)."""
        node_program = shutil.which("node")
        assert node_program is not None
        args = [f"--redis={self.redis_server.url}", f"--name={name}"]
        args += [f"--{key.replace('_', '-')}={value}" for key, value in options.items()]
        process = await asyncio.create_subprocess_exec(
            node_program,
            str(HERE / "cluster-node.js"),
            *args,
            cwd=HERE,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        line = b""
        try:
            async with asyncio.timeout(START_TIMEOUT):
                line = await process.stdout.readline()  # type: ignore[union-attr]
            port = int(json.loads(line)["port"])
        except (TimeoutError, ValueError, KeyError) as exc:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            what = f"cluster-node.js {name} did not report its port: {line!r}"
            raise AssertionError(what) from exc
        proxy = FaultProxy(upstream=("127.0.0.1", port))
        try:
            await proxy.start()
        except BaseException:
            process.kill()
            await process.wait()
            raise
        node = ClusterNode(process, port, name, proxy)
        self.nodes[name] = node
        return node

    async def session_stored(self, pid: str) -> bool:
        """Whether the adapter has persisted the session ``pid`` in Redis."""
        return bool(await self.redis.exists(SESSION_PREFIX + pid))

    async def stream_length(self) -> int:
        return int(await self.redis.xlen(STREAM))

    async def close(self) -> None:
        for node in self.nodes.values():
            await node.proxy.close()
            await node.stop()
        await self.redis.aclose()


@contextlib.asynccontextmanager
async def node_cluster(redis_server: RedisServer) -> AsyncIterator[NodeCluster]:
    cluster = NodeCluster(redis_server)
    try:
        yield cluster
    finally:
        await cluster.close()
