"""Fan-out on a cluster node: Redis pub/sub to this node's own connections, in order.

Every commit script publishes its event on one channel inside the same atomic step
that appends it (:mod:`fake_server.redis_scripts`), so the channel carries each room's
events in event-id order, and pub/sub keeps that order on each subscriber's connection:
every node delivers a room's events in the same order, with contiguous ids.

Pub/sub forgets what it publishes while a subscriber is away (a Redis restart, a cut
link).  The reader therefore remembers, for each room with members on this node, the
last event id it delivered; after it subscribes again it reads what it missed from
the room's log (a stream), and a message whose id skips ahead makes it read the hole
first.  Nothing committed is skipped on the way to a live member, and nothing is sent
twice (an id at or below the last delivered one is dropped).

The reader outlives whatever it meets: an error that is not Redis's answer (a bug, or
a library's leak) is logged, counted (``fanout_errors``) and handled as a lost
subscription, never the end of the fan-out while the node serves clients.

:meth:`Fanout.wait_delivered` lets a commit hold its ack until this node delivered the
event, so the sender sees its own ``chat:message`` before the ack, as on one node.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from .config import ServerConfig
from .lanes import TaskSet
from .redis_link import UNREACHABLE, stopping
from .store import StoreUnavailable

if TYPE_CHECKING:
    from .redis_store import RedisStore

__all__ = ["Fanout", "parse"]

log = logging.getLogger("fake_server.redis")

RESUBSCRIBE_CAP = 1.0
"""Longest wait between two attempts to subscribe again (seconds)."""


class Fanout:
    """The node's subscriber: see the module docstring."""

    def __init__(self, store: RedisStore, config: ServerConfig) -> None:
        self._store = store
        self._config = config
        self._delivered: dict[str, int] = {}
        """Room -> the last event id delivered here (rooms with members on this node)."""
        self._waiters: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}
        self._ready: asyncio.Event | None = None
        self.subscribed = False

    async def start(self, tasks: TaskSet) -> None:
        """Subscribe (the node must not take clients before); then read in a task of ``tasks``."""
        self._ready = asyncio.Event()
        reader = tasks.spawn(self._run(), name=f"fanout {self._store.node_id}")
        ready = asyncio.ensure_future(self._ready.wait())
        try:
            await asyncio.wait(
                {reader, ready},
                timeout=self._config.redis_timeout * 3,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            ready.cancel()
        if reader.done():
            try:
                reader.result()
            except RedisError as exc:
                raise ConnectionError(f"cannot subscribe to {self._store.channel}: {exc}") from exc
        if not self._ready.is_set():
            reader.cancel()
            raise ConnectionError(f"cannot subscribe to {self._store.channel}: no answer")

    # -- what the store tells it ------------------------------------------------------------

    def joined(self, room_id: str, last_event_id: int) -> None:
        """A member here joined the room at ``last_event_id`` (its baseline)."""
        self._delivered.setdefault(room_id, last_event_id)

    def left(self, room_id: str) -> None:
        if not self._store.local.has_members(room_id):
            self._delivered.pop(room_id, None)

    def reset(self) -> None:
        """A new epoch: event ids start again."""
        self._delivered.clear()
        for waiters in self._waiters.values():
            for _, future in waiters:
                if not future.done():
                    future.set_result(None)
        self._waiters.clear()

    async def wait_delivered(self, room_id: str, event_id: int, epoch: str) -> None:
        """Return once this node handled event ``event_id`` of the room (bounded wait)."""
        if self._delivered.get(room_id, 0) >= event_id and epoch == self._store.epoch:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(room_id, []).append((event_id, future))
        try:
            async with asyncio.timeout(self._config.redis_timeout):
                await future
        except TimeoutError:
            log.info(
                "fan-out of %s #%d not seen within %.3fs",
                room_id,
                event_id,
                self._config.redis_timeout,
            )
        finally:
            waiters = self._waiters.get(room_id)
            if waiters is not None:
                waiters[:] = [(i, f) for i, f in waiters if f is not future]
                if not waiters:
                    del self._waiters[room_id]

    # -- the reader ------------------------------------------------------------------------

    async def _run(self) -> None:
        delay = 0.05
        failures = 0  # unexpected errors in a row (in full at ERROR the 1st, 2nd, 4th, ...)
        while True:
            pubsub: PubSub = self._store.redis.pubsub()
            try:
                await pubsub.subscribe(self._store.channel)
                await self._confirmed(pubsub)
                await self._catch_up()
                await self._store.send_leaves()
                self.subscribed = True
                if self._ready is not None:
                    self._ready.set()
                delay = 0.05
                while True:
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=self._config.redis_timeout
                    )
                    if message is not None and message.get("type") == "message":
                        await self._handle(message["data"])
                        failures = 0
            except (*UNREACHABLE, StoreUnavailable) as exc:
                stopping()
                self._lost(exc)
            except RedisError as exc:  # refused (an ACL, a bad reply): not an outage
                if self._ready is not None and not self._ready.is_set():
                    raise  # at start: the node does not start
                log.error("fan-out reader: %s (subscribing again)", exc)
                self._lost(exc)
            except Exception:
                # Not Redis's answer: a bug here or in a library (redis-py let asyncio's
                # AttributeError out on 3.12, see redis_link). The reader must not end:
                # the node would go on taking clients and acking their messages without
                # fanning out one event. It subscribes again and catches up instead.
                stopping()
                if self._ready is not None and not self._ready.is_set():
                    raise  # at start: the node does not start
                failures += 1
                self._store.counters.bump("fanout_errors")
                # A failure that persists stays in the log (as rtclient.peerlog does).
                level = logging.ERROR if failures & (failures - 1) == 0 else logging.DEBUG
                log.log(level, "fan-out reader failed (subscribing again)", exc_info=True)
            finally:
                self.subscribed = False
                try:
                    async with asyncio.timeout(self._config.redis_timeout):
                        await pubsub.aclose()  # type: ignore[no-untyped-call]
                except Exception:  # the connection is gone already
                    log.debug("closing the pub/sub connection failed", exc_info=True)
            await asyncio.sleep(delay)
            delay = min(RESUBSCRIBE_CAP, delay * 2)

    async def _confirmed(self, pubsub: PubSub) -> None:
        """Wait for Redis to confirm the subscription (a refusal raises)."""
        async with asyncio.timeout(self._config.redis_timeout):
            while True:
                message = await pubsub.get_message(timeout=self._config.redis_timeout)
                if message is not None and message.get("type") == "subscribe":
                    return

    def _lost(self, exc: BaseException) -> None:
        self._store.link.failed(exc)
        log.debug("fan-out subscription lost: %s", exc)

    async def _catch_up(self) -> None:
        """Deliver what each room with members here missed while we were away."""
        for room_id, last in list(self._delivered.items()):
            await self._fill(room_id, last, None)

    async def _fill(self, room_id: str, after: int, before: int | None) -> None:
        """Deliver the room's logged events with ids in (``after``, ``before``)."""
        for kind, raw in await self._store.events_after(room_id, after, before):
            self._store.counters.bump("fanout_fills")
            payload = json.loads(raw)
            envelope = {"type": kind, "payload": payload}
            self._deliver_event(room_id, int(payload["eventId"]), envelope, 1)

    async def _handle(self, data: bytes) -> None:
        try:
            header, envelope = parse(data)
        except ValueError as exc:
            # Anything can publish on the channel; the reader must outlive it.
            counters = self._store.counters
            counters.bump("fanout_malformed")
            level = logging.WARNING if counters["fanout_malformed"] == 1 else logging.DEBUG
            log.log(level, "malformed message on %s ignored: %s", self._store.channel, exc)
            return
        if header[0] == "E":
            _, room_id, event_id, times, epoch = header
            if epoch != self._store.epoch:
                # Another node saw a new epoch first (or this is a straggler of the old
                # one): ask Redis which is current and adopt that one.
                await self._store.check_epoch()
                return
            self._store.saw(room_id, event_id)
            last = self._delivered.get(room_id)
            if last is not None and event_id > last + 1:
                await self._fill(room_id, last, event_id)
            self._deliver_event(room_id, event_id, envelope, times)
        else:
            _, room_id, skip_user, exclude = header
            self._store.local.deliver(
                room_id, envelope, skip_user=skip_user or None, exclude=exclude or None
            )

    def _deliver_event(
        self, room_id: str, event_id: int, envelope: dict[str, Any], times: int
    ) -> None:
        last = self._delivered.get(room_id)
        if last is not None and event_id <= last:
            return  # delivered already (a hole filled from the log)
        local = self._store.local
        if local.has_members(room_id):
            local.deliver(room_id, envelope, times=times)
            self._delivered[room_id] = event_id
        waiters = self._waiters.get(room_id)
        if waiters:
            for wanted, future in waiters:
                if wanted <= event_id and not future.done():
                    future.set_result(None)


def parse(data: bytes) -> tuple[list[Any], dict[str, Any]]:
    """A channel message: its header and envelope; ``ValueError`` when it is not one.

    ``["E", room, eventId, times, epoch]`` or ``["P", room, skipUser, excludeClientId]``,
    a newline, then the envelope (a JSON object with a string ``type``).
    """
    head, newline, body = data.partition(b"\n")
    if not newline:
        raise ValueError("no newline after the header")
    header = json.loads(head)
    envelope = json.loads(body)
    if not isinstance(envelope, dict) or not isinstance(envelope.get("type"), str):
        raise ValueError("the envelope is not an object with a type")
    if not isinstance(header, list) or not header:
        raise ValueError("the header is not a list")
    kind, *rest = header
    if kind == "E" and len(rest) == 4:
        room_id, event_id, times, epoch = rest
        if (
            isinstance(room_id, str)
            and isinstance(epoch, str)
            and type(event_id) is int
            and type(times) is int
            and event_id > 0
            and 1 <= times <= 2
        ):
            return header, envelope
    elif kind == "P" and len(rest) == 3 and all(isinstance(v, str) for v in rest):
        return header, envelope
    raise ValueError(f"bad header {head[:80]!r}")
