"""The servers of the scale benchmark, and how a rolling restart goes through them.

A :class:`Nodes` has URLs for the clients, starts, restarts every node one after the
other (:meth:`Nodes.rolling_restart`: the seconds each took until it was healthy
again) and stops. :data:`NODE_KINDS` names the kinds ``benchmarks.scale --nodes``
takes:

- ``single``: one in-memory node (``python -m benchmarks.server``, a FakeServer with
  the benchmark's limits lifted); its restart is a stop (SIGTERM: every client closed
  with 1001) and a new process on the same port. Its event log dies with the process:
  the clients are told of the lost part by a ``gap`` (a new epoch), as promised.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Protocol

from .harness import SECRET, ServerProcess

__all__ = ["NODE_KINDS", "Nodes", "SingleNode"]


class Nodes(Protocol):
    @property
    def urls(self) -> list[str]: ...

    @property
    def secret(self) -> str:
        """The token secret every node accepts."""
        ...

    async def start(self) -> None: ...

    async def rolling_restart(self, say: Callable[[str], None]) -> list[float]:
        """Restart every node in turn; the seconds each took until healthy."""
        ...

    async def stop(self) -> None: ...


class SingleNode:
    """One in-memory node: a restart loses its log (a new epoch, announced as a gap)."""

    def __init__(self) -> None:
        self.server = ServerProcess()

    @property
    def urls(self) -> list[str]:
        return [self.server.ws_url]

    @property
    def secret(self) -> str:
        return SECRET

    async def start(self) -> None:
        await self.server.start()

    async def rolling_restart(self, say: Callable[[str], None]) -> list[float]:
        began = time.monotonic()
        await self.server.kill(signal.SIGTERM)
        await self.server.start()
        took = time.monotonic() - began
        say(f"  node 1 restarted (SIGTERM, new process) in {took:.2f} s")
        return [took]

    async def stop(self) -> None:
        await self.server.kill(signal.SIGTERM)


class RedisCluster:
    """``rtclient serve --redis`` nodes on one redis-server (``rtclient.testing.Cluster``).

    The rolling restart drains node 1 (SIGTERM: its clients are told to go elsewhere,
    close 1012), starts it again and waits until it answers ``/health``, then node 2, …
    Every node shares the rooms' logs, the dedupe table and fan-out through Redis.
    """

    def __init__(self, nodes: int = 3) -> None:
        from rtclient.testing.cluster import Cluster

        # 1,000 clients from one loopback address, all on one node at the worst moment.
        args = ["--max-connections-per-address", "100000"]
        self.cluster = Cluster(nodes, redis_proxies=False, node_args=args)

    @property
    def urls(self) -> list[str]:
        return self.cluster.urls()

    @property
    def secret(self) -> str:
        return self.cluster.secret

    async def start(self) -> None:
        await self.cluster.start()

    async def rolling_restart(self, say: Callable[[str], None]) -> list[float]:
        took: list[float] = []
        for i in range(len(self.cluster.nodes)):
            began = time.monotonic()
            await self.cluster.drain(i)
            drained = time.monotonic() - began
            await self.cluster.start_node(i)
            took.append(time.monotonic() - began)
            say(f"  node {i + 1}: drained in {drained:.2f} s, healthy again after {took[-1]:.2f} s")
        return took

    async def stop(self) -> None:
        await self.cluster.aclose()


NODE_KINDS: dict[str, Callable[[], Nodes]] = {"single": SingleNode, "cluster": RedisCluster}
