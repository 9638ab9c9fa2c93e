"""The write buffer and group committer shared by every :class:`~.base.Store`.

The application's thread only touches the buffer: an ``enqueue`` is a dict insert, a
``remove`` of a message whose insert is still buffered cancels it out, and cursor
and room updates overwrite the previous value (coalescing). One committer task per
store takes the whole buffer as a :class:`Batch`, hands it to the backend's
``_write`` (one transaction), and resolves the future that every ``flush`` waiting
on that batch shares. While one batch is being written the next one fills up, so
the number of transactions follows the write latency, not the number of callers.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass

from .base import Cursor, StoredMessage, StoredState, StoreError

__all__ = ["Batch", "BufferedStore", "Row"]

Row = tuple[int, str, str, str, str, int, float, float | None, int]
"""An outbox row: seq, message_id, kind, room, payload (JSON), size, enqueued_at,
expires_at, attempts. ``seq`` orders the outbox."""

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@dataclass(slots=True)
class Batch:
    """The changes one transaction applies: deletes first, then inserts in seq order."""

    deletes: list[int]
    """The seqs of committed messages to delete."""
    inserts: list[Row]
    cursors: dict[str, Cursor | None]
    """Latest cursor per room; ``None`` removes the room's cursor."""
    rooms: list[str] | None
    """The full room list in join order, or None if unchanged."""


def row_to_message(row: Row) -> StoredMessage:
    """Decode a stored row."""
    _, message_id, kind, room, payload, size, enqueued_at, expires_at, attempts = row
    return StoredMessage(
        message_id, kind, room, json.loads(payload), size, enqueued_at, expires_at, attempts
    )


class _Phase(enum.Enum):
    CLOSED = "closed"
    OPENING = "opening"
    OPEN = "open"
    CLOSING = "closing"


class BufferedStore(ABC):
    """Buffering, coalescing and group commit; subclasses load and write.

    ``max_batch``: pending outbox changes that start a commit without waiting.
    ``max_delay``: how long an unflushed change may stay buffered (seconds).
    """

    def __init__(self, *, max_batch: int = 1024, max_delay: float = 0.005) -> None:
        if max_batch < 1 or not max_delay > 0:
            raise ValueError("max_batch and max_delay must be positive")
        self.max_batch = max_batch
        self.max_delay = max_delay
        self._phase = _Phase.CLOSED
        self._failure: StoreError | None = None
        self._task: asyncio.Task[None] | None = None
        self._init_buffer(StoredState(), [])

    def _init_buffer(self, state: StoredState, seqs: list[int]) -> None:
        # Every message id in the store (committed or buffered) and its seq: the store
        # refuses duplicates itself, and deletes by seq.
        self._ids = {m.message_id: seq for m, seq in zip(state.outbox, seqs, strict=True)}
        self._rooms = list(state.rooms)
        self._cursors = dict(state.cursors)
        self._next_seq = max(seqs, default=0) + 1
        self._inserts: dict[str, Row] = {}
        self._deletes: set[int] = set()
        self._pending_cursors: dict[str, Cursor | None] = {}
        self._pending_rooms: list[str] | None = None
        self._next_done: asyncio.Future[None] | None = None
        self._writing: asyncio.Future[None] | None = None
        self._kick = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None

    # -- what a backend provides -------------------------------------------------------

    @abstractmethod
    async def _load(self) -> tuple[StoredState, list[int]]:
        """Acquire the store; return its contents and the seq of each outbox message."""

    @abstractmethod
    async def _write(self, batch: Batch) -> None:
        """Apply ``batch`` atomically; durable (as documented) when it returns."""

    @abstractmethod
    async def _release(self) -> None:
        """Give back everything ``_load`` acquired. Called once per successful load."""

    # -- life cycle -----------------------------------------------------------------

    async def open(self) -> StoredState:
        """Load the store and start the committer; see :meth:`Store.open`."""
        if self._phase is not _Phase.CLOSED:
            raise StoreError(f"store is {self._phase.value}, not closed")
        self._phase = _Phase.OPENING
        try:
            state, seqs = await self._load()
        except BaseException:
            self._phase = _Phase.CLOSED
            raise
        self._failure = None
        self._init_buffer(state, seqs)
        self._task = asyncio.get_running_loop().create_task(self._commit_loop())
        self._phase = _Phase.OPEN
        return state

    async def close(self) -> None:
        """Commit the buffer, stop the committer, release resources; see :meth:`Store.close`."""
        if self._phase is not _Phase.OPEN:
            return
        self._phase = _Phase.CLOSING
        self._kick.set()
        task, self._task = self._task, None
        try:
            if task is not None:
                await task
        finally:
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._cancel_timer()
            self._phase = _Phase.CLOSED
            await self._release()
        if self._failure is not None:
            raise self._failure

    # -- buffered changes -----------------------------------------------------------

    def enqueue(self, message: StoredMessage) -> None:
        """Buffer ``message`` at the end of the outbox; see :meth:`Store.enqueue`."""
        self._check_open()
        message_id = message.message_id
        if message_id in self._ids:
            raise ValueError(f"message id {message_id} is already in the store")
        row: Row = (
            self._next_seq,
            message_id,
            message.kind,
            message.room,
            _encode(message.payload),
            message.size,
            message.enqueued_at,
            message.expires_at,
            message.attempts,
        )
        self._next_seq += 1
        self._ids[message_id] = row[0]
        self._inserts[message_id] = row
        self._changed(len(self._inserts) + len(self._deletes))

    def remove(self, message_id: str) -> bool:
        """Buffer a removal; cancels a still-buffered enqueue. See :meth:`Store.remove`."""
        self._check_open()
        seq = self._ids.pop(message_id, None)
        if seq is None:
            return False
        if self._inserts.pop(message_id, None) is None:
            self._deletes.add(seq)
            self._changed(len(self._inserts) + len(self._deletes))
        return True

    def set_rooms(self, rooms: Iterable[str]) -> None:
        """Buffer the joined rooms in join order; see :meth:`Store.set_rooms`."""
        self._check_open()
        rooms = list(rooms)
        if len(set(rooms)) != len(rooms):
            raise ValueError("a room is listed twice")
        if rooms != self._rooms:
            self._rooms = rooms
            self._pending_rooms = list(rooms)
            self._changed(0)

    def set_cursor(self, room: str, epoch: str | None, last_event_id: int | None) -> None:
        """Buffer ``room``'s cursor (coalesced); see :meth:`Store.set_cursor`."""
        self._check_open()
        cursor = Cursor(epoch, last_event_id)
        if self._cursors.get(room) != cursor:
            self._cursors[room] = cursor
            self._pending_cursors[room] = cursor
            self._changed(0)

    def forget_cursor(self, room: str) -> None:
        """Buffer the removal of ``room``'s cursor; see :meth:`Store.forget_cursor`."""
        self._check_open()
        if self._cursors.pop(room, None) is not None:
            self._pending_cursors[room] = None
            self._changed(0)

    async def flush(self) -> None:
        """Wait for the commit of everything buffered so far; see :meth:`Store.flush`."""
        self._check_open(allow_closing=True)
        if self._pending():
            if self._next_done is None:
                self._next_done = asyncio.get_running_loop().create_future()
            done = self._next_done
            self._kick.set()
        elif self._writing is not None:
            done = self._writing
        else:
            return
        # Shielded: one caller's cancellation must not cancel the others' commit.
        await asyncio.shield(done)

    async def enqueue_durable(self, message: StoredMessage) -> None:
        """Enqueue and wait for the commit; see :meth:`Store.enqueue_durable`."""
        self.enqueue(message)
        await self.flush()

    # -- the committer --------------------------------------------------------------

    def _check_open(self, *, allow_closing: bool = False) -> None:
        if self._failure is not None:
            raise self._failure
        if self._phase is not _Phase.OPEN and not (allow_closing and self._phase is _Phase.CLOSING):
            raise StoreError(f"store is {self._phase.value}")

    def _pending(self) -> bool:
        return bool(
            self._inserts
            or self._deletes
            or self._pending_cursors
            or self._pending_rooms is not None
        )

    def _changed(self, outbox_changes: int) -> None:
        if outbox_changes >= self.max_batch:
            self._kick.set()
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.max_delay, self._kick.set)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _take(self) -> tuple[Batch, asyncio.Future[None]]:
        batch = Batch(
            list(self._deletes),
            list(self._inserts.values()),
            self._pending_cursors,
            self._pending_rooms,
        )
        self._inserts, self._deletes = {}, set()
        self._pending_cursors, self._pending_rooms = {}, None
        done = self._next_done or asyncio.get_running_loop().create_future()
        self._next_done = None
        return batch, done

    async def _commit_loop(self) -> None:
        while True:
            await self._kick.wait()
            self._kick.clear()
            self._cancel_timer()
            if self._pending():
                batch, done = self._take()
                self._writing = done
                try:
                    await self._write(batch)
                except Exception as exc:
                    self._fail(exc, done)
                    return
                except asyncio.CancelledError:
                    self._fail(StoreError("store closed while a commit was under way"), done)
                    raise
                self._writing = None
                done.set_result(None)
                if self._pending():
                    self._changed(len(self._inserts) + len(self._deletes))
                    if self._next_done is not None or self._phase is _Phase.CLOSING:
                        self._kick.set()
            if self._phase is _Phase.CLOSING and not self._pending():
                return

    def _fail(self, exc: BaseException, done: asyncio.Future[None]) -> None:
        error = exc if isinstance(exc, StoreError) else StoreError(f"store write failed: {exc}")
        if error is not exc:
            error.__cause__ = exc
        self._failure = error
        self._writing = None
        for future in (done, self._next_done):
            if future is not None and not future.done():
                future.set_exception(error)
                future.exception()  # retrieved here; the waiters re-raise it
        self._next_done = None
