"""The chaos checker over a cluster: bots on every node's URL (or a balancer's), nodes
killed, drained, cut off from Redis mid-stream, and the history checked.

::

    async with Cluster(3) as cluster:
        result = await run_cluster_soak(cluster, seed=7, seconds=15)
    assert result.ok, result.summary()

or step by step::

    async with Cluster(3) as cluster, ClusterLab(cluster, LabConfig(bots=4)) as lab:
        stop = asyncio.Event()
        senders = lab.start_senders(stop, rate=10)
        await CLUSTER_FAULTS["kill"](lab, random.Random(1))
        stop.set(); await senders
        await lab.settle(timeout=20)
    report = check(lab.history)

The cluster (and balancer) belong to the caller; the lab owns only its bots. Each bot is
given every node's URL (``cluster.urls(transport)``) or, with ``balancer=``, the
balancer's one URL. The nodes run in other processes, so where a room's log ends is
learnt from the acks the bots were given (every message of a run is a bot's).

Every fault picks the node with the most connections (the one whose loss hurts), keeps
the others running, and puts the node back before it returns, so faults never overlap.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self

from ..balancer import Balancer
from ..cluster import Cluster
from .checker import check
from .fleet import Fleet, LabConfig, Transport
from .history import Acked, History
from .soak import SoakResult

__all__ = ["CLUSTER_FAULTS", "ClusterFault", "ClusterLab", "run_cluster_soak"]

ClusterFault = Callable[["ClusterLab", random.Random], Awaitable[str]]


class ClusterLab(Fleet):
    """Bots on a started :class:`~rtclient.testing.cluster.Cluster`; use ``async with``."""

    def __init__(
        self,
        cluster: Cluster,
        config: LabConfig,
        history: History | None = None,
        *,
        balancer: Balancer | None = None,
    ) -> None:
        super().__init__(config, history)
        self.cluster = cluster
        self.balancer = balancer
        self._heads: dict[str, tuple[str | None, int]] = {}

    async def __aenter__(self) -> Self:
        try:
            await self._start_bots()
        except BaseException:
            await self._close_bots()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close_bots()

    def _url(self, transport: Transport) -> Any:
        if self.balancer is not None:
            return self.balancer.url(transport)
        return self.cluster.urls(transport)

    def _token_for(self, user: str) -> Callable[[], str]:
        return self.cluster.token_provider(user, ttl=self.config.token_ttl)

    def _head(self, room: str) -> tuple[str | None, int]:
        return self._heads.get(room, (None, 0))

    def _track(self, record: object) -> None:
        super()._track(record)
        if isinstance(record, Acked):
            epoch, head = self._heads.get(record.room, (None, 0))
            if record.epoch != epoch:
                self._heads[record.room] = (record.epoch, record.event_id)
            elif record.event_id > head:
                self._heads[record.room] = (epoch, record.event_id)

    async def target(self) -> int:
        """The running node with the most connections (the first on a tie)."""
        counts = await self.cluster.connections()
        running = self.cluster.running()
        return max(running, key=lambda i: counts[i] or 0)


# -- faults ----------------------------------------------------------------------------------


async def _hold(seconds: float) -> None:
    # The fault's window: pacing of the workload, not synchronisation.
    await asyncio.sleep(seconds)


async def kill(lab: ClusterLab, rng: random.Random) -> str:
    node, downtime = await lab.target(), rng.uniform(0.3, 0.8)
    await lab.cluster.kill(node)
    await _hold(downtime)
    await lab.cluster.start_node(node)
    return f"node {node} SIGKILLed, restarted after {downtime:.2f} s"


async def drain(lab: ClusterLab, rng: random.Random) -> str:
    node, downtime = await lab.target(), rng.uniform(0.1, 0.5)
    started = time.monotonic()
    await lab.cluster.drain(node)
    took = time.monotonic() - started
    await _hold(downtime)
    await lab.cluster.start_node(node)
    return f"node {node} drained (SIGTERM, exit 0 in {took:.2f} s), back after {downtime:.2f} s"


async def partition(lab: ClusterLab, rng: random.Random) -> str:
    node, window = await lab.target(), rng.uniform(0.5, 1.2)
    await lab.cluster.partition(node)
    try:
        await _hold(window)
    finally:
        await lab.cluster.heal(node)
    return f"node {node} cut off from Redis for {window:.2f} s"


async def restart_redis(lab: ClusterLab, rng: random.Random) -> str:
    downtime = rng.uniform(0.1, 0.4)
    await lab.cluster.restart_redis(keep_data=True, downtime=downtime)
    return f"redis-server restarted (data kept) after {downtime:.2f} s"


CLUSTER_FAULTS: dict[str, ClusterFault] = {
    "kill": kill,
    "drain": drain,
    "partition": partition,
    "restart_redis": restart_redis,
}
"""Every cluster fault by name; each leaves every node running when it returns."""


async def run_cluster_soak(
    cluster: Cluster,
    *,
    seed: int,
    seconds: float,
    config: LabConfig | None = None,
    balancer: Balancer | None = None,
    kinds: tuple[str, ...] = ("kill", "drain"),
    rate: float = 10.0,
    settle_timeout: float = 20.0,
    pause: tuple[float, float] = (0.2, 0.6),
    log: Callable[[str], None] | None = None,
) -> SoakResult:
    """Bots send ``rate`` messages a second each while faults of ``kinds`` (drawn from
    :data:`CLUSTER_FAULTS`, each once per round in a seeded order) follow one another
    for ``seconds`` — and until each kind ran once, however slow the machine; then every
    node is up, the bots settle and the history is checked.
    """
    started = time.monotonic()
    config = config or LabConfig(seed=seed)
    rng = random.Random(seed)
    fault_log: list[tuple[float, str]] = []
    async with ClusterLab(cluster, config, balancer=balancer) as lab:
        stop = asyncio.Event()
        senders = lab.start_senders(stop, rate)
        bag: list[str] = []
        try:
            while time.monotonic() - started < seconds or not all(lab.faults[k] for k in kinds):
                if not bag:
                    bag = rng.sample(kinds, len(kinds))
                name = bag.pop()
                at = time.monotonic() - started
                what = await CLUSTER_FAULTS[name](lab, rng)
                lab.faults[name] += 1
                fault_log.append((at, what))
                if log is not None:
                    log(f"{at:6.2f}s  {what}")
                await asyncio.sleep(rng.uniform(*pause))  # the schedule's pace
        finally:
            stop.set()
            await senders
        settled = await lab.settle(settle_timeout)
    report = check(lab.history)
    return SoakResult(
        seed=seed,
        wall=time.monotonic() - started,
        settled=settled,
        report=report,
        figures=lab.figures(report),
        leftover=len(lab.leftover),
        history=lab.history,
        fault_log=fault_log,
    )
