"""The shared state of the hub behind one interface: :class:`Store`, and its in-memory kind.

What a cluster of nodes must share (each room's event log and epoch, the dedupe table,
presence, rate limits, fan-out) goes through a :class:`Store`; what belongs to one node
(its connections, their room memberships, timers) stays in the hub.  Two kinds:

* :class:`MemoryStore` (this module): one process, the embedded default, no Redis.
  Every method finishes without suspending, so the hub runs each request inline, in
  arrival order, as it always did (:func:`run_inline`).
* :class:`~fake_server.redis_store.RedisStore`: a node of a cluster on Redis.  Its
  methods wait for Redis, so the hub runs each connection's requests one after the
  other on an ordered lane (:mod:`fake_server.lanes`).

The methods are coroutines in both kinds so that the request handlers are written once.
A store reaches the node's own connections through the :class:`Local` it is bound to.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from .config import ServerConfig
from .dedupe import DedupeTable, Entry, digest
from .envelope import event
from .errors import ErrorCode, RequestError
from .eventlog import LogStore, SyncPage
from .ratelimit import RateLimiter

__all__ = [
    "EPHEMERAL",
    "MESSAGES",
    "QUERY",
    "Limit",
    "Local",
    "MemoryStore",
    "Message",
    "Store",
    "StoreBusy",
    "StoreUnavailable",
    "presence_event",
    "run_inline",
]

T = TypeVar("T")


class StoreUnavailable(Exception):
    """The shared store cannot be reached now; the request may be sent again later.

    Raised by a store in place of its client library's errors (mapped at the store's
    boundary); ``retry_after`` is the capped hint for the client.
    """

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreBusy(StoreUnavailable):
    """The store answers, but this node already runs as many commands as it may: the
    request waited its turn too long.  Load, not an outage (counted apart)."""


Limit = Literal["msg", "eph", "qry"]
"""Which token bucket a request takes from (``ServerConfig`` rate settings): messages,
ephemeral events (typing, receipts), queries (join, leave, members, sync).  Plain
strings, not an enum: the lookup is on every request's path."""
MESSAGES: Limit = "msg"
EPHEMERAL: Limit = "eph"
QUERY: Limit = "qry"


@dataclass(slots=True)
class Message:
    """A ``chat:send`` / ``dm:send`` to commit: the log payload without its event id."""

    user_id: str
    message_id: str
    room_id: str
    kind: str
    """The event name members get (``chat:message``, ``dm:message``)."""
    text: str
    extra: tuple[tuple[str, str], ...]
    """Fields between ``from`` and ``text`` (``to`` of a direct message)."""
    now: float

    def payload(self, event_id: int, epoch: str) -> dict[str, Any]:
        payload = {
            "roomId": self.room_id,
            "eventId": event_id,
            "epoch": epoch,
            "messageId": self.message_id,
            "from": self.user_id,
        }
        for key, value in self.extra:
            payload[key] = value
        payload["text"] = self.text
        payload["timestamp"] = self.now
        return payload


def receipt(
    room_id: str, event_id: int, message_id: str, epoch: str, timestamp: float
) -> dict[str, Any]:
    """The ack payload of a committed message (``duplicate`` is added by the caller)."""
    return {
        "roomId": room_id,
        "eventId": event_id,
        "messageId": message_id,
        "epoch": epoch,
        "timestamp": timestamp,
    }


def presence_event(kind: str, room_id: str, user_id: str, now: float) -> dict[str, Any]:
    """A ``user:joined`` / ``user:left`` envelope."""
    return event(kind, {"roomId": room_id, "userId": user_id, "timestamp": now})


class Local(Protocol):
    """What a store needs of the node's own side (the hub)."""

    def deliver(
        self,
        room_id: str,
        envelope: dict[str, Any],
        *,
        skip_user: str | None = None,
        exclude: str | None = None,
        times: int = 1,
    ) -> None:
        """Send ``envelope`` to this node's connections in the room (``exclude``: a client id)."""

    def local_members(self, room_id: str) -> list[str]:
        """Users with a connection to this node in the room."""

    def has_members(self, room_id: str) -> bool:
        """Whether a connection to this node is in the room."""

    def presence(self) -> dict[str, set[str]]:
        """Room -> users with a connection to this node in it (inboxes left out)."""

    def epoch_changed(self, epoch: str) -> None:
        """The shared log was lost: tell every client (they reconnect and see a gap)."""

    def cut_off(self, retry_after: float) -> None:
        """The store has been unreachable too long: send every client elsewhere."""


class Store(Protocol):
    """The shared state of the hub; see the module docstring."""

    immediate: bool
    """True when no method ever suspends (requests may run inline)."""

    @property
    def epoch(self) -> str: ...

    def bind(self, local: Local) -> None:
        """Deliver to ``local``; called once, before :meth:`start`."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def available(self) -> float | None:
        """``None`` while new clients may come; else the seconds they should wait."""

    async def take(self, limit: Limit, user_id: str) -> float:
        """Take a token; 0.0 when allowed, else the seconds until one is free."""

    async def find(self, user_id: str, message_id: str) -> Entry | None:
        """The committed message this (user, message id) stands for, if any."""

    async def commit(
        self, message: Message, *, duplicate: Callable[[], bool] = lambda: False
    ) -> dict[str, Any]:
        """Append, remember and fan out ``message`` in one step.

        ``duplicate()`` is asked once for a message that is new: True sends members two
        copies (the ``duplicate_next_events`` fault).

        Return its ack payload with ``duplicate``: a message id already committed is
        answered with the original ack (``duplicate: True``) and nothing is appended;
        the same id for another room or text raises ``IDEMPOTENCY_CONFLICT``.
        """

    async def page(
        self, room_id: str, *, after: int, limit: int, epoch: str | None
    ) -> tuple[str, SyncPage]:
        """(epoch, page) of the room's log after ``after`` (``epoch``: the cursor's)."""

    async def join(self, room_id: str, user_id: str, *, first: bool) -> tuple[list[str], str, int]:
        """A connection of the user joined on this node (``first``: its first there).

        Return the room's members (every node), the epoch and the last event id.
        """

    async def leave(self, room_id: str, user_id: str) -> None:
        """The user's last connection on this node left the room."""

    async def members(self, room_id: str) -> list[str]:
        """Sorted ids of the users in the room, on every node."""

    async def publish(
        self,
        room_id: str,
        envelope: dict[str, Any],
        *,
        skip_user: str | None = None,
        exclude: str | None = None,
    ) -> None:
        """Fan out an event that is not logged (presence, typing, receipts)."""

    async def reset(self) -> None:
        """Forget every log and the dedupe table: a new epoch."""

    def health(self) -> dict[str, Any]:
        """What ``/health`` shows of the store."""


def run_inline(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends to its end, here and now; return its result.

    The hub uses it with an :attr:`Store.immediate` store, so that one set of request
    handlers serves both kinds of store and the in-memory node stays synchronous
    (in-order, no task per request).  A coroutine that does suspend is a bug.
    """
    try:
        coro.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coro.close()
    raise RuntimeError("a request on an immediate store suspended")


class MemoryStore:
    """One process's shared state: logs, dedupe table and rate limiters in memory."""

    immediate = True

    def __init__(
        self,
        config: ServerConfig,
        *,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
    ) -> None:
        self._config = config
        self._clock = clock
        self._monotonic = monotonic
        self._local: Local | None = None
        self.logs = self._new_logs()
        self.dedupe = self._new_dedupe()
        self.limiters: dict[str, RateLimiter] = {
            MESSAGES: RateLimiter(rate=config.rate_per_second, burst=config.rate_burst),
            EPHEMERAL: RateLimiter(rate=config.ephemeral_per_second, burst=config.ephemeral_burst),
            QUERY: RateLimiter(rate=config.query_per_second, burst=config.query_burst),
        }

    def _new_logs(self) -> LogStore:
        cfg = self._config
        return LogStore(max_count=cfg.retention_count, max_age=cfg.retention_seconds)

    def _new_dedupe(self) -> DedupeTable:
        return DedupeTable(ttl=self._config.dedupe_ttl, max_entries=self._config.dedupe_max)

    @property
    def epoch(self) -> str:
        return self.logs.epoch

    @property
    def local(self) -> Local:
        assert self._local is not None, "bind() the store first"
        return self._local

    def bind(self, local: Local) -> None:
        self._local = local

    async def start(self) -> None:
        """Nothing to start."""

    async def close(self) -> None:
        """Nothing to close."""

    def available(self) -> float | None:
        return None

    async def take(self, limit: Limit, user_id: str) -> float:
        return self.limiters[limit].take(user_id, self._monotonic())

    async def find(self, user_id: str, message_id: str) -> Entry | None:
        return self.dedupe.get(user_id, message_id, now=self._clock())

    async def commit(
        self, message: Message, *, duplicate: Callable[[], bool] = lambda: False
    ) -> dict[str, Any]:
        now = message.now
        entry = self.dedupe.get(message.user_id, message.message_id, now=now)
        if entry is not None:
            check_same(entry, message)
            return {**entry.ack, "duplicate": True}
        logs = self.logs
        log = logs.for_append(message.room_id, now=now)
        event_id = log.next_event_id()
        epoch = logs.epoch
        payload = message.payload(event_id, epoch)
        log.append(payload)
        log.prune(now=now, max_count=logs.max_count, max_age=logs.max_age)
        ack = receipt(message.room_id, event_id, message.message_id, epoch, now)
        self.dedupe.put(
            message.user_id,
            message.message_id,
            Entry(message.room_id, digest(message.text), ack, now),
        )
        times = 2 if duplicate() else 1
        self.local.deliver(message.room_id, event(message.kind, payload), times=times)
        return {**ack, "duplicate": False}

    async def page(
        self, room_id: str, *, after: int, limit: int, epoch: str | None
    ) -> tuple[str, SyncPage]:
        same = epoch is None or epoch == self.epoch
        page = self.logs.page(room_id, now=self._clock(), after=after, limit=limit, same_epoch=same)
        return self.epoch, page

    async def join(self, room_id: str, user_id: str, *, first: bool) -> tuple[list[str], str, int]:
        now = self._clock()
        if first and not room_id.startswith("user:"):
            joined = presence_event("user:joined", room_id, user_id, now)
            self.local.deliver(room_id, joined, skip_user=user_id)
        last = self.logs.last_event_id(room_id, now=now)
        return self.local.local_members(room_id), self.epoch, last

    async def leave(self, room_id: str, user_id: str) -> None:
        if not room_id.startswith("user:"):
            left = presence_event("user:left", room_id, user_id, self._clock())
            self.local.deliver(room_id, left, skip_user=user_id)

    async def members(self, room_id: str) -> list[str]:
        return self.local.local_members(room_id)

    async def publish(
        self,
        room_id: str,
        envelope: dict[str, Any],
        *,
        skip_user: str | None = None,
        exclude: str | None = None,
    ) -> None:
        self.local.deliver(room_id, envelope, skip_user=skip_user, exclude=exclude)

    async def reset(self) -> None:
        self.logs = self._new_logs()
        self.dedupe = self._new_dedupe()

    def health(self) -> dict[str, Any]:
        return {"storedEvents": self.logs.stored_events(), "logs": len(self.logs)}


def check_same(entry: Entry, message: Message) -> None:
    """Refuse a message id reused for another room or text (``IDEMPOTENCY_CONFLICT``)."""
    if entry.room_id != message.room_id or entry.text_digest != digest(message.text):
        raise RequestError(
            ErrorCode.IDEMPOTENCY_CONFLICT, "message id already used for a different message"
        )
