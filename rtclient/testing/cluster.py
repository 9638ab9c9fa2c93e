"""A fake_server cluster for tests: a real redis-server and N ``rtclient serve`` nodes.

::

    async with Cluster(3) as cluster:
        client = Client(cluster.urls(), token=cluster.token_provider("alice"))
        ...
        await cluster.kill(0)            # SIGKILL: a crash
        await cluster.restart(0)         # same port, healthy again
        await cluster.drain(1)           # SIGTERM: the node drains and exits 0
        await cluster.partition(2)       # node 2 loses Redis (connects refused) ...
        await cluster.heal(2)            # ... and gets it back
        await cluster.restart_redis(keep_data=False)   # the data set is lost: a new epoch

Every node is a subprocess (``python -m rtclient serve --redis … --port … --secret …``)
on a port of its own that it keeps across restarts; its Redis connection goes through a
:class:`~rtclient.testing.FaultProxy` of its own, which is how a single node is cut off
from Redis (``redis_proxy(i)`` gives any toxic as well). Readiness is each node's
``/health`` answering 200, polled. Leaving ``async with`` (or :meth:`Cluster.aclose`)
stops every process and proxy, also after a failure.

``Cluster(3, redis=False)`` starts independent in-memory nodes (no Redis, nothing
shared): enough for failover across URLs, drains and balancers where the nodes need not
share state. A missing ``redis-server`` raises
:class:`~rtclient.testing.programs.ProgramMissing` (the ``rt_cluster`` fixture turns it
into a skip off CI and a failure under ``CI=true``).
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from .cluster_node import READY_TIMEOUT, NodeFailed, NodeProcess
from .programs import free_port
from .proxy import FaultProxy
from .redis_server import RedisServer

if TYPE_CHECKING:
    from fake_server.auth import TokenAuthority

__all__ = ["Cluster", "NodeFailed", "NodeProcess", "free_port"]


class Cluster:
    """``nodes`` fake_server processes on one redis-server; use ``async with``.

    ``node_args`` are further ``rtclient serve`` flags for every node (e.g.
    ``["--ping-interval", "1"]``); ``redis_proxies=False`` connects the nodes to Redis
    directly (no :meth:`partition`; for benchmarks where the proxy's hop would be
    measured too). ``log_dir`` keeps the nodes' logs (``node-<i>.log``); by default a
    temporary folder, removed on exit.
    """

    def __init__(
        self,
        nodes: int = 3,
        *,
        redis: bool = True,
        redis_proxies: bool = True,
        host: str = "127.0.0.1",
        node_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        log_dir: Path | None = None,
        ready_timeout: float = READY_TIMEOUT,
    ) -> None:
        if nodes < 1:
            raise ValueError("a cluster has at least one node")
        self.host = host
        self.secret = secrets.token_urlsafe(32)
        self.admin_token = secrets.token_urlsafe(16)
        self.redis: RedisServer | None = RedisServer(host=host) if redis else None
        self._redis_proxies = redis and redis_proxies
        self._proxies: list[FaultProxy | None] = [None] * nodes
        self._own_dir = log_dir is None
        self.log_dir = (
            Path(tempfile.mkdtemp(prefix="rtclient-cluster-")) if log_dir is None else log_dir
        )
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._node_args = list(node_args)
        self.nodes = [
            NodeProcess(
                i,
                host=host,
                port=free_port(host),
                argv=[],
                log_path=self.log_dir / f"node-{i}.log",
                env=env,
                ready_timeout=ready_timeout,
            )
            for i in range(nodes)
        ]
        self._authority: TokenAuthority | None = None

    def __repr__(self) -> str:
        up = sum(node.running for node in self.nodes)
        return f"<Cluster {up}/{len(self.nodes)} nodes up, redis={self.redis!r}>"

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Start Redis, the proxies and every node (in parallel); all healthy on return.

        On failure everything started so far is stopped before the error propagates.
        """
        from fake_server.auth import TokenAuthority

        self._authority = TokenAuthority(self.secret, leeway=2.0)
        try:
            if self.redis is not None:
                await self.redis.start()
                if self._redis_proxies:
                    for i in range(len(self.nodes)):
                        upstream = (self.redis.host, self.redis.port)
                        self._proxies[i] = await FaultProxy(upstream=upstream).start()
            for node in self.nodes:
                node.argv = self._argv(node)
            await asyncio.gather(*(node.start() for node in self.nodes))
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """SIGKILL every node still running, close the proxies, stop Redis; idempotent."""
        await asyncio.gather(*(node.kill() for node in self.nodes), return_exceptions=True)
        for i, proxy in enumerate(self._proxies):
            if proxy is not None:
                await proxy.close()
                self._proxies[i] = None
        if self.redis is not None:
            await self.redis.__aexit__(None, None, None)
        if self._own_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def _argv(self, node: NodeProcess) -> list[str]:
        argv = ["--host", self.host, "--port", str(node.port)]
        # "=" form: a random token may begin with "-", which argparse takes for a flag.
        argv += [f"--secret={self.secret}", f"--admin-token={self.admin_token}"]
        argv += ["--log-level", "WARNING"]
        redis_url = self.redis_url(node.index)
        if redis_url is not None:
            argv += [f"--redis={redis_url}"]
        return argv + self._node_args

    # -- what clients need -------------------------------------------------------------------

    def urls(self, transport: str = "websocket", nodes: Iterable[int] | None = None) -> list[str]:
        """Every node's URL for ``transport`` (``websocket``/``aiohttp``: ``ws://…/ws``;
        ``socketio``: ``http://…``), in node order, or those of ``nodes`` only."""
        chosen = range(len(self.nodes)) if nodes is None else nodes
        return [self.nodes[i].url(transport) for i in chosen]

    def issue_token(self, user: str, *, ttl: float = 3600.0, roles: Iterable[str] = ()) -> str:
        """A token every node accepts (they share the secret), for ``user``."""
        if self._authority is None:
            raise RuntimeError("the cluster has not been started")
        return self._authority.issue(user, now=time.time(), ttl=ttl, roles=roles)

    def token_provider(self, user: str, *, ttl: float = 3600.0) -> Callable[[], str]:
        """A ``token=`` for :class:`~rtclient.Client`: a fresh token on every attempt."""
        return lambda: self.issue_token(user, ttl=ttl)

    def redis_url(self, i: int) -> str | None:
        """The Redis URL node ``i`` is given (its proxy's), or None without Redis."""
        if self.redis is None:
            return None
        proxy = self._proxies[i]
        if proxy is None:
            return self.redis.url
        return f"redis://{proxy.host}:{proxy.port}/0"

    def redis_proxy(self, i: int) -> FaultProxy:
        """The FaultProxy between node ``i`` and Redis (for toxics beyond a partition)."""
        proxy = self._proxies[i]
        if proxy is None:
            raise RuntimeError(
                "this cluster has no Redis proxies (redis=False or redis_proxies=False)"
            )
        return proxy

    # -- faults ------------------------------------------------------------------------------

    def running(self) -> list[int]:
        """The indexes of the nodes whose process is running."""
        return [node.index for node in self.nodes if node.running]

    async def kill(self, i: int) -> None:
        """SIGKILL node ``i``: its connections die without a close frame."""
        await self.nodes[i].kill()

    async def start_node(self, i: int) -> None:
        """Start node ``i`` again (same port, same flags) and wait until it is healthy."""
        await self.nodes[i].start()

    async def restart(self, i: int, *, downtime: float = 0.0) -> None:
        """SIGKILL node ``i`` if it runs, wait ``downtime`` s, start it, wait until healthy."""
        await self.kill(i)
        if downtime > 0:
            await asyncio.sleep(downtime)  # the outage asked for, not synchronisation
        await self.start_node(i)

    async def drain(self, i: int, *, timeout: float = 20.0) -> None:
        """SIGTERM node ``i`` and wait until it has drained and exited with status 0.

        Raises :class:`NodeFailed` on another status, or when it is still running after
        ``timeout`` s (it is SIGKILLed then).
        """
        status = await self.nodes[i].terminate(timeout)
        if status != 0:
            raise self.nodes[i].failure(f"exited with status {status} after SIGTERM")

    async def partition(self, i: int, *, reset: bool = True) -> None:
        """Cut node ``i`` off from Redis: its connections are cut (an RST with ``reset``),
        new ones refused, until :meth:`heal`."""
        await self.redis_proxy(i).down(reset=reset)

    async def heal(self, i: int) -> None:
        """Give node ``i`` its Redis back (and lift any toxic on its proxy)."""
        proxy = self.redis_proxy(i)
        proxy.clear()
        await proxy.up()

    async def restart_redis(self, *, keep_data: bool = True, downtime: float = 0.0) -> None:
        """Restart redis-server on its port; ``keep_data=False`` loses the data set."""
        if self.redis is None:
            raise RuntimeError("this cluster has no Redis (redis=False)")
        await self.redis.restart(keep_data=keep_data, downtime=downtime)

    # -- health ------------------------------------------------------------------------------

    async def health(self, i: int) -> dict[str, Any] | None:
        """Node ``i``'s ``/health`` document, or None when it does not answer 200."""
        return await self.nodes[i].health()

    async def connections(self) -> list[int | None]:
        """Each node's authenticated connections (``/health``), None where it is down."""
        documents = await asyncio.gather(*(node.health() for node in self.nodes))
        return [None if d is None else int(d.get("connections", 0)) for d in documents]

    async def busiest(self) -> int:
        """The index of the node with the most connections right now."""
        counts = await self.connections()
        return max(range(len(counts)), key=lambda i: counts[i] or 0)

    async def wait_healthy(self, i: int, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until node ``i`` (running) answers ``/health`` with 200."""
        return await self.nodes[i].wait_healthy(timeout)
