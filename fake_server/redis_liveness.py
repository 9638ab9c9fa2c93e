"""A cluster node's epoch, heartbeat and presence in Redis: the :class:`NodeLiveness` half of
:class:`~fake_server.redis_store.RedisStore`.

The heartbeat keeps the node alive in Redis, sweeps the members of dead nodes and notices
a lost or rolled-back data set, which starts a new epoch (:meth:`NodeLiveness.epoch_seen`).
Presence (join, leave, members) lives in Redis so every node sees every member; leaves
that did not reach Redis are sent again once it answers.  The keys and the failure
behaviour are in ``docs/cluster.md``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .config import ServerConfig
from .eventlog import new_epoch
from .redis_link import RedisLink, stopping
from .stats import Counters
from .store import Local, StoreUnavailable, presence_event

if TYPE_CHECKING:
    from .redis_fanout import Fanout

__all__ = ["NodeLiveness"]

log = logging.getLogger("fake_server.redis")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


class NodeLiveness:
    """Epoch, heartbeat and presence of a :class:`~fake_server.redis_store.RedisStore`,
    which holds the state declared here and sets it up in its ``__init__``."""

    _config: ServerConfig
    node_id: str
    _counters: Counters
    _clock: Callable[[], float]
    _p: str
    link: RedisLink
    _redis: aioredis.Redis
    channel: str
    _epoch: str
    _left: deque[str]
    _mark: tuple[str, int] | None
    _unsent_leaves: set[tuple[str, str]]
    fanout: Fanout
    _epoch_lock: asyncio.Lock

    if TYPE_CHECKING:

        @property
        def local(self) -> Local: ...

        def key(self, *parts: str) -> str: ...

        async def _sweep(self) -> None: ...

        async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any: ...

    # -- epoch and heartbeat ----------------------------------------------------------------

    async def _heartbeat_once(self) -> tuple[str, bool]:
        """Refresh this node's liveness; return the epoch (a new one on a fresh data set)
        and whether the cluster still took this node for alive."""
        cfg = self._config
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(self.key("node", self.node_id), "1", px=int(cfg.node_ttl * 1000), get=True)
        pipe.sadd(self.key("nodes"), self.node_id)
        was_alive, _ = await pipe.execute()
        epoch = await self.link.script("ENSURE_EPOCH", [self.key("epoch")], [new_epoch()])
        return str(epoch.decode()), was_alive is not None

    def saw(self, room_id: str, event_id: int) -> None:
        """Event ``event_id`` of the room exists in this epoch (committed or fanned out)."""
        self._mark = (room_id, event_id)

    def _mark_args(self) -> tuple[str, int]:
        """The seq key and event id of the mark (the epoch key and 0 when there is none)."""
        if self._mark is None:
            return self.key("epoch"), 0
        room_id, event_id = self._mark
        return self.key("seq", room_id), event_id

    async def _check_mark(self) -> str:
        """Start a new epoch when Redis lost events this node saw; return the epoch."""
        seq_key, event_id = self._mark_args()
        raw = await self.link.script(
            "MARK", [self.key("epoch"), seq_key], [self._epoch, event_id, new_epoch()]
        )
        return str(raw.decode())

    async def _reassert_presence(self) -> None:
        """Put this node's members back (``user:joined`` for those the rooms lost)."""
        for room_id, users in self.local.presence().items():
            for user_id in users:
                await self.join(room_id, user_id, first=True)

    async def _heartbeat(self) -> None:
        cfg = self._config
        period = cfg.node_ttl / 3
        while True:
            await asyncio.sleep(period)
            try:
                async with self.link.calling():
                    epoch, alive = await self._heartbeat_once()
                    if epoch == self._epoch:
                        epoch = await self._check_mark()
                    await self._sweep()
                if epoch != self._epoch:
                    await self.epoch_seen(epoch)
                elif not alive:
                    # The cluster took us for dead (our key expired): our members come back
                    # (and the sweep told the rooms about the ones that left meanwhile).
                    log.warning("node %s was taken for dead; its members rejoin", self.node_id)
                    self._unsent_leaves.clear()
                    await self._reassert_presence()
                await self.send_leaves()
            except RedisError as exc:  # not an outage: a script or a command refused
                self._counters.bump("redis_errors")
                log.error("heartbeat of node %s failed: %s", self.node_id, exc)
            except StoreUnavailable:
                if self.link.down_for() >= cfg.redis_cutoff and not self.link.cut_off:
                    self.link.cut_off = True
                    self._counters.bump("redis_cutoffs")
                    self.local.cut_off(self._config.redis_retry_after)
            except Exception:
                # Not Redis's answer (a bug, or a library's leak as redis-py's on 3.12):
                # the heartbeat goes on, or the cluster would take this node, which
                # still serves its clients, for dead.
                stopping()
                self._counters.bump("heartbeat_errors")
                log.error("heartbeat of node %s failed", self.node_id, exc_info=True)

    async def check_epoch(self) -> None:
        """Ask Redis for the current epoch (a new one on a fresh data set) and adopt it."""
        async with self.link.calling():
            raw = await self.link.script("ENSURE_EPOCH", [self.key("epoch")], [new_epoch()])
        await self.epoch_seen(raw.decode())

    async def epoch_seen(self, epoch: str) -> None:
        """Redis holds ``epoch`` (empty: none, the data set was lost): adopt a new one."""
        if epoch == self._epoch:
            return
        async with self._epoch_lock:
            if epoch == self._epoch:
                return
            for _ in range(3):
                if not epoch:  # the data set was lost: a new epoch, unless one was made
                    async with self.link.calling():
                        raw = await self.link.script(
                            "ENSURE_EPOCH", [self.key("epoch")], [new_epoch()]
                        )
                    epoch = raw.decode()
                if epoch not in self._left:
                    break
                # An older snapshot of an epoch we left: its ids were given out after it.
                async with self.link.calling():
                    raw = await self.link.script(
                        "REPLACE_EPOCH", [self.key("epoch")], [epoch, new_epoch()]
                    )
                epoch = raw.decode()
            else:
                raise StoreUnavailable("the epoch keeps changing", self.link.retry_after())
            if epoch == self._epoch:
                return
            if self._epoch:
                self._left.append(self._epoch)
            old, self._epoch = self._epoch, epoch
            self._mark = None
            self._counters.bump("epoch_changes")
            log.warning("epoch %s -> %s: the shared log was lost or reset", old, epoch)
            self.fanout.reset()
            self.local.epoch_changed(epoch)

    # -- presence ------------------------------------------------------------------------------

    async def join(self, room_id: str, user_id: str, *, first: bool) -> tuple[list[str], str, int]:
        epoch = self._epoch
        record = first and not room_id.startswith("user:")
        joined = presence_event("user:joined", room_id, user_id, self._clock())
        reply = await self._script(
            "JOIN",
            [
                self.key("epoch"),
                self.key("pres", room_id),
                self.key("noderooms", self.node_id),
                self.key("seq", room_id),
            ],
            [
                epoch,
                self.node_id,
                user_id,
                "1" if record else "0",
                self._p,
                self.channel,
                self._message(room_id, joined, skip_user=user_id),
                room_id,
            ],
        )
        last = int(reply[1])
        self.fanout.joined(room_id, last)
        users = {raw.decode() for raw in reply[2:]} | set(self.local.local_members(room_id))
        return sorted(users), epoch, last

    async def leave(self, room_id: str, user_id: str) -> None:
        message = ""
        if not room_id.startswith("user:"):
            left = presence_event("user:left", room_id, user_id, self._clock())
            message = self._message(room_id, left, skip_user=user_id)
        self.fanout.left(room_id)
        try:
            await self._script(
                "LEAVE",
                [self.key("pres", room_id)],
                [self.node_id, user_id, self._p, self.channel, message],
            )
        except StoreUnavailable:
            self._unsent_leaves.add((room_id, user_id))
            raise
        self._unsent_leaves.discard((room_id, user_id))

    async def send_leaves(self) -> None:
        """Send again the leaves that did not reach Redis (unless the user is back)."""
        for room_id, user_id in sorted(self._unsent_leaves):
            if user_id in self.local.local_members(room_id):
                self._unsent_leaves.discard((room_id, user_id))
            else:
                await self.leave(room_id, user_id)

    async def members(self, room_id: str) -> list[str]:
        reply = await self._script("MEMBERS", [self.key("pres", room_id)], [self._p])
        return sorted({raw.decode() for raw in reply} | set(self.local.local_members(room_id)))

    def _message(
        self,
        room_id: str,
        envelope: dict[str, Any],
        *,
        skip_user: str | None = None,
        exclude: str | None = None,
    ) -> str:
        return _dumps(["P", room_id, skip_user or "", exclude or ""]) + "\n" + _dumps(envelope)
