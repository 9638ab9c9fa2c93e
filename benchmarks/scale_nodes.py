"""The servers of the scale benchmark, and how a rolling restart goes through them.

A :class:`Nodes` has URLs for the clients, starts, restarts every node one after the
other (:meth:`Nodes.rolling_restart`: the seconds each took until it was healthy
again) and stops. :data:`NODE_KINDS` names the kinds ``benchmarks.scale --nodes``
takes:

- ``single``: one in-memory ``rtclient serve`` node; its restart is a drain (SIGTERM)
  and a new process on the same port. Its event log dies with the process: the
  clients are told of what is lost by a ``gap`` (a new epoch), as promised;
- ``cluster``: three ``rtclient serve --redis`` nodes on one redis-server, restarted
  one after the other; nothing is lost with a node.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from rtclient.testing.cluster import Cluster, NodeFailed

__all__ = ["NODE_KINDS", "Nodes", "ServeNodes"]


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

    @property
    def failed_drains(self) -> list[str]:
        """Nodes that did not finish their drain (SIGKILLed instead), and why."""
        ...


class _Cluster(Cluster):
    """A Cluster whose nodes get ``?<redis_query>`` on their ``--redis`` URL (the redis
    client's own options, e.g. ``max_connections=1000``: its pool holds 100 by default)."""

    def __init__(self, *args: Any, redis_query: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._redis_query = redis_query

    def redis_url(self, i: int) -> str | None:
        url = super().redis_url(i)
        return f"{url}?{self._redis_query}" if url and self._redis_query else url


class ServeNodes:
    """``rtclient serve`` node processes (``rtclient.testing.Cluster``), with or without Redis.

    The rolling restart drains node 1 (SIGTERM: its clients are told to go elsewhere,
    close 1012 with a retry hint), starts it again and waits until it answers
    ``/health``, then node 2, … With Redis every node shares the rooms' logs, the dedupe
    table and fan-out; without, a node's log dies with its process.
    """

    def __init__(
        self, nodes: int, *, redis: bool, log_dir: Path | None = None, redis_query: str = ""
    ) -> None:
        # 1,000 clients from one loopback address, all on one node at the worst moment.
        args = ["--max-connections-per-address", "100000"]
        self.cluster = _Cluster(
            nodes,
            redis=redis,
            redis_proxies=False,
            node_args=args,
            log_dir=log_dir,
            redis_query=redis_query,
        )
        self.failed_drains: list[str] = []
        """Nodes that had not exited 20 s after SIGTERM (then SIGKILLed), and why."""

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
            try:
                await self.cluster.drain(i)
                how = "drained"
            except NodeFailed as exc:  # still running 20 s after SIGTERM: SIGKILLed
                self.failed_drains.append(f"node {i + 1}: {str(exc).splitlines()[0]}")
                how = "SIGKILLed after a drain that did not end"
            drained = time.monotonic() - began
            await self.cluster.start_node(i)
            took.append(time.monotonic() - began)
            say(f"  node {i + 1}: {how} in {drained:.2f} s, healthy again after {took[-1]:.2f} s")
        return took

    async def stop(self) -> None:
        await self.cluster.aclose()


NODE_KINDS: dict[str, Callable[[Path | None, str], Nodes]] = {
    "single": lambda logs, _: ServeNodes(1, redis=False, log_dir=logs),
    "cluster": lambda logs, query: ServeNodes(3, redis=True, log_dir=logs, redis_query=query),
}
"""By name: a function of the folder that keeps the nodes' logs (None: not kept) and
of the query string added to the nodes' Redis URL."""
