"""Bots that chat and are recorded: what a chaos lab is made of, whatever the servers are.

:class:`Fleet` holds the bots (clients on both transports), their :class:`History`, the
workload (:meth:`Fleet.start_senders`) and the end of a run (:meth:`Fleet.settle`,
:meth:`Fleet.figures`). A lab says where the bots connect, how they get tokens and where
each room's log ends: :class:`~.lab.Lab` (one FakeServer behind a FaultProxy, in process)
and :class:`~.cluster_lab.ClusterLab` (node processes on Redis, in a
:class:`~rtclient.testing.cluster.Cluster`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ...backoff import Backoff
from ...client import Client
from ...events import ConnectionState
from .checker import Report
from .history import Delivered, History, QualityMoved, StateMoved

__all__ = ["Bot", "Figures", "Fleet", "LabConfig", "percentile", "recovery_times"]

Transport = Literal["websocket", "aiohttp", "socketio"]


@dataclass(frozen=True)
class LabConfig:
    """How many bots and rooms, and the clients' timings (seconds)."""

    bots: int = 4
    rooms: int = 3
    seed: int = 0
    socketio: tuple[int, ...] | None = None
    """Which bots use Socket.IO (default: every second one)."""
    aiohttp: tuple[int, ...] = ()
    """Which of the other bots use the aiohttp WebSocket transport (default: none)."""
    ping_interval: float = 0.25
    ping_timeout: float = 0.5
    ack_timeout: float = 1.0
    connect_timeout: float = 1.5
    token_ttl: float = 600.0
    backoff: Backoff = field(
        default_factory=lambda: Backoff(base=0.02, cap=0.3, first_delay=0.02, stable_after=0.5)
    )
    server: dict[str, Any] = field(default_factory=dict)
    """Further FakeServer settings (e.g. a smaller ``retention_count`` for long runs)."""


@dataclass(frozen=True)
class Bot:
    """One client of the lab: its name (also its user id), transport and rooms."""

    name: str
    transport: Transport
    rooms: tuple[str, ...]
    client: Client


@dataclass
class Figures:
    """The totals of a run, for reports."""

    sent: int
    acked: int
    delivered: int
    lost: int
    duplicated: int
    reordered: int
    unannounced_gaps: int
    reconnects: int
    recovery: list[float]
    quality_transitions: int
    faults: Counter[str]


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``values`` by nearest rank, or None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))
    return ordered[rank]


class Fleet:
    """The bots of one chaos run and their history; a lab subclasses it.

    A subclass implements :meth:`_url` (what a bot of a transport connects to),
    :meth:`_token_for` (a token provider for a user) and :meth:`_head` (where a room's log
    ends now), starts its servers, then calls :meth:`_start_bots`; closing calls
    :meth:`_close_bots` before stopping the servers.
    """

    def __init__(self, config: LabConfig, history: History | None = None) -> None:
        self.config = config
        self.history = history if history is not None else History()
        self.bots: list[Bot] = []
        self.faults: Counter[str] = Counter()
        self.reconnects = 0
        self.final_stats: dict[str, dict[str, int]] = {}
        """Each bot's ``client.stats()`` just before it was closed."""
        self.leftover: set[asyncio.Task[object]] = set()
        self._sends: set[asyncio.Task[None]] = set()
        self._cursor: dict[tuple[str, str], tuple[str | None, int]] = {}
        self._tasks_before: set[asyncio.Task[object]] = set()
        self.history.listeners.append(self._track)

    @property
    def heartbeat_window(self) -> float:
        """How long a dead link may go unnoticed: ping interval + ping timeout."""
        return self.config.ping_interval + self.config.ping_timeout

    @property
    def rooms(self) -> list[str]:
        return [f"room-{i}" for i in range(self.config.rooms)]

    # -- what a lab provides -----------------------------------------------------------------

    def _url(self, transport: Transport) -> Any:
        """The URL (or list of URLs) a bot of ``transport`` is given."""
        raise NotImplementedError

    def _token_for(self, user: str) -> Callable[[], str]:
        raise NotImplementedError

    def _head(self, room: str) -> tuple[str | None, int]:
        """``(epoch, last event id)`` of ``room``'s log now (0: empty)."""
        raise NotImplementedError

    def _client_options(self) -> dict[str, Any]:
        """Further Client options for every bot."""
        return {}

    # -- bots --------------------------------------------------------------------------------

    async def _start_bots(self) -> None:
        self._tasks_before = asyncio.all_tasks()
        cfg, rooms = self.config, self.rooms
        socketio = set(cfg.socketio if cfg.socketio is not None else range(1, cfg.bots, 2))
        for i in range(cfg.bots):
            name = f"bot{i}"
            mine = tuple(dict.fromkeys(rooms[(i + k) % len(rooms)] for k in range(2)))
            transport: Transport = (
                "socketio" if i in socketio else "aiohttp" if i in cfg.aiohttp else "websocket"
            )
            client = Client(
                self._url(transport),
                token=self._token_for(name),
                transport=transport,
                backoff=dataclasses.replace(cfg.backoff, seed=cfg.seed * 100 + i),
                ack_timeout=cfg.ack_timeout,
                connect_timeout=cfg.connect_timeout,
                ping_interval=cfg.ping_interval,
                ping_timeout=cfg.ping_timeout,
                **self._client_options(),
            )
            self.history.watch(client, name)
            self.bots.append(Bot(name, transport, mine, client))
        await asyncio.gather(*(bot.client.connect() for bot in self.bots))
        for bot in self.bots:
            for room in bot.rooms:
                await bot.client.join(room)
                epoch, head = self._head(room)
                self.history.joined(bot.name, room, head, epoch)

    async def _close_bots(self) -> None:
        """Stop the sends, close every client, fill :attr:`leftover`."""
        for task in self._sends:
            task.cancel()
        await asyncio.gather(*self._sends, return_exceptions=True)
        self.final_stats = {bot.name: bot.client.stats() for bot in self.bots}
        self.reconnects = sum(stats["reconnects"] for stats in self.final_stats.values())
        await asyncio.gather(*(bot.client.close(flush=False) for bot in self.bots))
        self.leftover = {
            t
            for t in asyncio.all_tasks() - self._tasks_before
            if "rtclient" in t.get_name() and not t.done()
        }

    # -- the workload ------------------------------------------------------------------------

    def start_senders(
        self, stop: asyncio.Event, rate: float, *, tag: str = ""
    ) -> asyncio.Task[None]:
        """Every bot sends ``rate`` messages a second to its rooms until ``stop`` is set.

        Texts are ``"<bot>:<tag><n>"``: a new ``tag`` keeps them unique when senders
        are started again on the same history.

        Each message is a recorded ``send`` in a task of its own (acks arrive whenever
        the link lets them); the returned task ends when the bots stop sending.
        """

        async def bot_sends(bot: Bot, rng: random.Random) -> None:
            seq = 0
            while not stop.is_set():
                room = rng.choice(bot.rooms)
                text = f"{bot.name}:{tag}{seq}"
                seq += 1
                task = asyncio.create_task(self.history.send(bot.client, bot.name, room, text))
                self._sends.add(task)
                task.add_done_callback(self._sends.discard)
                try:  # the workload's pace, not synchronisation
                    async with asyncio.timeout(rng.expovariate(rate)):
                        await stop.wait()
                except TimeoutError:
                    pass

        async def all_bots() -> None:
            await asyncio.gather(
                *(
                    bot_sends(bot, random.Random(f"{self.config.seed}/{bot.name}"))
                    for bot in self.bots
                )
            )

        return asyncio.create_task(all_bots(), name="chaos senders")

    async def settle(self, timeout: float) -> bool:
        """Wait (up to ``timeout`` s) for every ack and for every room to be synced.

        Returns whether everything settled; the checker reports whatever did not.
        """
        deadline = time.monotonic() + timeout
        if self._sends:
            await asyncio.wait(set(self._sends), timeout=timeout)
        while not self.synced():
            if time.monotonic() >= deadline or any(
                bot.client.state is ConnectionState.CLOSED for bot in self.bots
            ):
                return False  # out of time, or a client stopped for good
            await asyncio.sleep(0.02)  # the state spans server and clients: poll it
        return True

    def synced(self) -> bool:
        """Every bot connected with an empty outbox, and at the head of each of its rooms."""
        for bot in self.bots:
            if bot.client.state is not ConnectionState.CONNECTED:
                return False
            if bot.client.stats()["queued"]:
                return False
            for room in bot.rooms:
                epoch, head = self._head(room)
                if head and self._cursor.get((bot.name, room)) != (epoch, head):
                    return False
        return not self._sends

    def cut_history(self) -> None:
        """Start :attr:`history` afresh from here: every bot a member from its rooms' heads.

        For long runs whose history would otherwise grow without bound: call it once
        :meth:`settle` returned True (nothing in flight, every bot at every head) and
        the senders have stopped, after checking what was recorded so far.
        """
        self.history.records.clear()
        for bot in self.bots:
            for room in bot.rooms:
                epoch, head = self._head(room)
                self.history.joined(bot.name, room, head, epoch)

    def _track(self, record: object) -> None:
        if isinstance(record, Delivered):
            self._cursor[record.client, record.room] = (record.epoch, record.event_id)

    # -- figures -----------------------------------------------------------------------------

    def figures(self, report: Report) -> Figures:
        """The run's totals, from the history and the checker's ``report``."""
        counts = report.counts()
        return Figures(
            sent=report.sent,
            acked=report.acked,
            delivered=report.delivered,
            lost=counts["lost"],
            duplicated=counts["duplicated"],
            reordered=counts["reordered"],
            unannounced_gaps=counts["unannounced_gaps"],
            reconnects=self.reconnects,
            recovery=recovery_times(self.history),
            quality_transitions=sum(isinstance(r, QualityMoved) for r in self.history.records),
            faults=Counter(self.faults),
        )


def recovery_times(history: History, client: str | None = None) -> list[float]:
    """Seconds from each connection loss to CONNECTED again (of one ``client``, or all)."""
    lost_at: dict[str, float] = {}
    times: list[float] = []
    for record in history.records:
        if not isinstance(record, StateMoved) or client not in (None, record.client):
            continue
        if record.new is ConnectionState.RECONNECTING and record.client not in lost_at:
            lost_at[record.client] = record.at
        elif record.new is ConnectionState.CONNECTED and record.client in lost_at:
            times.append(record.at - lost_at.pop(record.client))
        elif record.new in (ConnectionState.CLOSING, ConnectionState.CLOSED):
            lost_at.pop(record.client, None)
    return times
