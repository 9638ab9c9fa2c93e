"""A cluster node's shared state in Redis: :class:`RedisStore` (``FakeServer(redis_url=...)``).

Every node on one Redis shares each room's log and epoch, the dedupe table, presence,
rate limits and fan-out.  Each step that must be atomic is one Lua script
(:mod:`fake_server.redis_scripts`); events reach each node's own connections through
:class:`~fake_server.redis_fanout.Fanout` (pub/sub, in commit order).  The epoch, the heartbeat and
presence are :class:`~fake_server.redis_liveness.NodeLiveness`.  The design, the keys and
the failure behaviour are in ``docs/cluster.md``.

Errors of the ``redis`` package never leave the link (:mod:`fake_server.redis_link`) and
the fan-out: an unreachable Redis is :class:`~fake_server.store.StoreUnavailable` (the
request gets a retry reply), logged once per outage and counted (``/health``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .config import ServerConfig
from .dedupe import Entry, digest
from .eventlog import SyncPage, new_epoch
from .lanes import TaskSet
from .redis_fanout import Fanout
from .redis_link import UNREACHABLE, RedisLink
from .redis_liveness import NodeLiveness, _dumps
from .stats import Counters
from .store import (
    EPHEMERAL,
    MESSAGES,
    QUERY,
    Limit,
    Local,
    Message,
    StoreUnavailable,
    check_same,
    receipt,
)

__all__ = ["RedisStore"]

log = logging.getLogger("fake_server.redis")


CLUSTER_COUNTERS = (
    "store_unavailable",
    "store_busy",
    "redis_errors",
    "redis_outages",
    "redis_cutoffs",
    "epoch_changes",
    "fanout_fills",
    "fanout_malformed",
    "fanout_errors",
    "heartbeat_errors",
)
"""Counters a cluster node adds to ``/health`` (an in-memory node has none of them)."""


class RedisStore(NodeLiveness):
    """The :class:`~fake_server.store.Store` of a cluster node; see the module docstring."""

    immediate = False

    def __init__(
        self,
        config: ServerConfig,
        *,
        node_id: str,
        counters: Counters,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if "|" in node_id or not node_id:
            raise ValueError("a node id must be non-empty and must not contain '|'")
        assert config.redis_url is not None
        self._config = config
        self.node_id = node_id
        self._counters = counters
        for name in CLUSTER_COUNTERS:
            counters.setdefault(name, 0)
        self._clock = clock
        self._p = config.redis_prefix
        self.link = RedisLink(config, node_id=node_id, counters=counters, monotonic=monotonic)
        self._redis = self.link.client
        # Pub/sub channels are not per database: the database is in the name, or two
        # clusters on redis://…/0 and redis://…/1 would hear each other.
        db = self._redis.connection_pool.connection_kwargs.get("db", 0)
        self.channel = f"{self._p}:fanout:{db}"
        self._epoch = ""
        self._left: deque[str] = deque(maxlen=32)
        """Epochs this node has left: Redis going back to one of them is a new epoch."""
        self._mark: tuple[str, int] | None = None
        """The last event (room, id) of this epoch the node saw: a data set rolled back
        to before it is a new epoch (see ``redis_scripts.rolled_back``)."""
        self._local: Local | None = None
        self._unsent_leaves: set[tuple[str, str]] = set()
        """(room, user) whose leave did not reach Redis: sent again once it answers."""
        self._tasks = TaskSet()
        self.fanout = Fanout(self, config)
        self._epoch_lock = asyncio.Lock()

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def epoch(self) -> str:
        return self._epoch

    @property
    def local(self) -> Local:
        assert self._local is not None, "bind() the store first"
        return self._local

    @property
    def counters(self) -> Counters:
        return self._counters

    @property
    def redis(self) -> aioredis.Redis:
        return self._redis

    def key(self, *parts: str) -> str:
        return ":".join((self._p, *parts))

    def _dedupe_key(self, user_id: str, message_id: str) -> str:
        """``P:dd:LEN:USER:MSGID``: the length keeps ("a:x", "y") apart from ("a", "x:y")."""
        return self.key("dd", str(len(user_id)), user_id, message_id)

    def bind(self, local: Local) -> None:
        self._local = local

    async def start(self) -> None:
        """Register the node, learn the epoch, subscribe; raise when Redis is unreachable."""
        try:
            async with asyncio.timeout(self._config.redis_timeout * 3):
                # A past life under this id (killed, restarted within node_ttl) left
                # presence entries that no connection here backs: dead now, swept.
                await self._redis.delete(self.key("node", self.node_id))
                await self._sweep()
                self._epoch, _ = await self._heartbeat_once()
        except UNREACHABLE as exc:
            await self.link.close()
            raise ConnectionError(f"cannot reach redis: {exc}") from exc
        try:
            await self.fanout.start(self._tasks)
        except BaseException:
            await self._tasks.close()
            await self.link.close()
            raise
        self._tasks.spawn(self._heartbeat(), name=f"redis-heartbeat {self.node_id}")
        await self._check_eviction()
        log.info("node %s joined the cluster (epoch %s)", self.node_id, self._epoch)

    async def _check_eviction(self) -> None:
        """Warn when Redis may evict keys: an evicted counter gives event ids out again,
        an evicted dedupe entry lets a resend be committed twice."""
        try:
            async with asyncio.timeout(self._config.redis_timeout):
                reply: Any = await self._redis.config_get("maxmemory-policy")
        except (*UNREACHABLE, RedisError):  # CONFIG may be disabled (managed Redis)
            return
        policy = reply.get(b"maxmemory-policy", reply.get("maxmemory-policy", b""))
        policy = policy.decode() if isinstance(policy, bytes) else str(policy)
        if policy and policy != "noeviction":
            log.warning(
                "node %s: redis maxmemory-policy is %s; only noeviction keeps event ids "
                "and dedupe entries (see docs/cluster.md)",
                self.node_id,
                policy,
            )

    async def close(self) -> None:
        """Stop the heartbeat and the fan-out; leave the cluster when Redis answers."""
        await self._tasks.close()
        try:
            async with asyncio.timeout(self._config.redis_timeout):
                # Our members leave with the node (the sweep tells their rooms).
                await self._redis.delete(self.key("node", self.node_id))
                await self._sweep()
        except UNREACHABLE:
            pass
        await self.link.close()

    async def _sweep(self) -> None:
        args = [self._p, self.channel, repr(self._clock())]
        await self.link.script("SWEEP", [self.key("nodes")], args)

    # -- calls ---------------------------------------------------------------------------

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run a script; one that found another epoch in Redis makes the node adopt it."""
        async with self.link.calling():
            reply = await self.link.script(name, keys, args)
        if isinstance(reply, list) and reply and reply[0] == b"EPOCH":
            await self.epoch_seen(reply[1].decode())
            raise StoreUnavailable("the shared log changed epoch", self.link.retry_after())
        return reply

    # -- the Store interface ------------------------------------------------------------------

    def available(self) -> float | None:
        if self.link.cut_off:
            return self._config.redis_retry_after
        return None

    async def take(self, limit: Limit, user_id: str) -> float:
        cfg = self._config
        rate, burst = {
            MESSAGES: (cfg.rate_per_second, cfg.rate_burst),
            EPHEMERAL: (cfg.ephemeral_per_second, cfg.ephemeral_burst),
            QUERY: (cfg.query_per_second, cfg.query_burst),
        }[limit]
        reply = await self._script("RATE", [self.key("rl", limit, user_id)], [rate, burst])
        return float(reply)

    async def find(self, user_id: str, message_id: str) -> Entry | None:
        async with self.link.calling():
            raw: Any = await self._redis.get(self._dedupe_key(user_id, message_id))
        return None if raw is None else self._entry(raw, message_id)

    @staticmethod
    def _entry(raw: bytes, message_id: str) -> Entry:
        room_id, text_digest, event_id, stored_at, epoch = raw.decode().split("\n")
        ack = receipt(room_id, int(event_id), message_id, epoch, float(stored_at))
        return Entry(room_id, bytes.fromhex(text_digest), ack, float(stored_at))

    async def commit(
        self, message: Message, *, duplicate: Callable[[], bool] = lambda: False
    ) -> dict[str, Any]:
        cfg = self._config
        room_id = message.room_id
        epoch = self._epoch
        # The payload around its event id, which the script fills in.  The key is part
        # of the separator: in a string value its quotes would be escaped.
        marker = -(2**52)
        pre, sep, post = _dumps(message.payload(marker, epoch)).partition(f'"eventId":{marker}')
        assert sep, "the payload has an eventId"
        pre += '"eventId":'
        times = 2 if duplicate() else 1
        mark_key, mark = self._mark_args()
        reply = await self._script(
            "COMMIT",
            [
                self.key("epoch"),
                self._dedupe_key(message.user_id, message.message_id),
                self.key("seq", room_id),
                self.key("log", room_id),
                mark_key,
            ],
            [
                epoch,
                room_id,
                digest(message.text).hex(),
                pre,
                post,
                repr(message.now),
                cfg.retention_count,
                repr(cfg.retention_seconds),
                int(cfg.dedupe_ttl * 1000),
                self.channel,
                times,
                _dumps(message.kind),
                _dumps(room_id),
                _dumps(epoch),
                message.kind,
                mark,
                new_epoch(),
            ],
        )
        if reply[0] == b"DUP":
            entry = self._entry(reply[1], message.message_id)
            check_same(entry, message)
            return {**entry.ack, "duplicate": True}
        event_id = int(reply[1])
        if epoch == self._epoch:
            self.saw(room_id, event_id)
        # Our own connections see the event before the ack (as on a single node).
        await self.fanout.wait_delivered(room_id, event_id, epoch)
        return {
            **receipt(room_id, event_id, message.message_id, epoch, message.now),
            "duplicate": False,
        }

    async def page(
        self, room_id: str, *, after: int, limit: int, epoch: str | None
    ) -> tuple[str, SyncPage]:
        cfg = self._config
        current = self._epoch
        reply = await self._script(
            "PAGE",
            [self.key("epoch"), self.key("seq", room_id), self.key("log", room_id)],
            [
                current,
                after,
                limit,
                repr(self._clock()),
                cfg.retention_count,
                repr(cfg.retention_seconds),
                epoch or "",
            ],
        )
        events = [json.loads(raw) for raw in reply[4:]]
        page = SyncPage(
            events=events,
            more=bool(reply[3]),
            truncated=bool(reply[2]),
            last_event_id=int(reply[1]),
        )
        return current, page

    async def events_after(
        self, room_id: str, after: int, before: int | None
    ) -> list[tuple[str, bytes]]:
        """(event name, raw payload) of the room's logged events in (``after``, ``before``)."""
        end = "+" if before is None else f"{before - 1}-0"
        if before is not None and before - 1 <= after:
            return []
        async with self.link.calling():
            entries: Any = await self._redis.xrange(self.key("log", room_id), f"{after + 1}-0", end)
        epoch = self._epoch.encode()
        return [
            (fields[b"k"].decode(), fields[b"p"])
            for _, fields in entries
            if fields.get(b"e", epoch) == epoch
        ]

    async def publish(
        self,
        room_id: str,
        envelope: dict[str, Any],
        *,
        skip_user: str | None = None,
        exclude: str | None = None,
    ) -> None:
        message = self._message(room_id, envelope, skip_user=skip_user, exclude=exclude)
        async with self.link.calling():
            await self._redis.publish(self.channel, message)

    async def reset(self) -> None:
        """A new epoch for the whole cluster: every log and dedupe entry is dropped."""
        async with self.link.calling():
            raw = await self.link.script("RESET", [self.key("epoch")], [self.key(""), new_epoch()])
        await self.epoch_seen(raw.decode())

    def health(self) -> dict[str, Any]:
        return {
            "redis": {
                "reachable": self.link.down_since is None,
                "downFor": round(self.link.down_for(), 3),
                "outages": self.link.outages,
                "cutOff": self.link.cut_off,
                "subscribed": self.fanout.subscribed,
            }
        }
