"""The outgoing side of one connection: an ordered, bounded queue and the task that drains it.

Both endpoints' peers (:class:`~fake_server.ws_peer.WsPeer`,
:class:`~fake_server.sio_peer.SioPeer`) are a :class:`QueuedPeer`: everything going
out (envelopes, acks, pings, the close) goes through one queue, so injected latency
and pauses keep the per-connection order.  Each transport supplies :meth:`_write`
(write one item), :meth:`_close_item` (what a close looks like in its queue) and
:meth:`_cut` (drop the TCP connection).

The queue is bounded in frames and bytes (``ServerConfig.max_queued_frames`` /
``max_queued_bytes``).  A client that does not read its replies fills it: the server
then throws the backlog away, closes with 1013 ``slow consumer`` and cuts the TCP
connection if that close has not gone out ``close_timeout`` later.  Memory per
connection stays bounded whatever the client does.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections import Counter, deque
from dataclasses import dataclass
from typing import Generic, TypeVar

from .errors import CloseCode
from .faults import FaultState
from .stats import Counters

__all__ = ["SLOW_CONSUMER", "QueueLimits", "QueuedPeer"]

log = logging.getLogger("fake_server.peer")

SLOW_CONSUMER = (int(CloseCode.TRY_AGAIN_LATER), "slow consumer")
"""The close sent to a client whose outgoing queue overflowed: retryable (1013)."""

ItemT = TypeVar("ItemT")


@dataclass(frozen=True, slots=True)
class QueueLimits:
    """How much may wait for one connection: ``frames`` items, ``size`` bytes."""

    frames: int
    size: int


@dataclass(frozen=True, slots=True)
class _Entry(Generic[ItemT]):
    due: float
    """Loop time before which the item must not be written (injected latency)."""
    item: ItemT
    size: int
    tag: str | None


class QueuedPeer(abc.ABC, Generic[ItemT]):
    """One connection's ordered, pausable, delayable, bounded sender.

    The endpoint must run :meth:`run_writer` in a task for the lifetime of the
    connection and set :attr:`finished` once the connection's handling is over.
    """

    def __init__(
        self,
        *,
        faults: FaultState,
        counters: Counters,
        limits: QueueLimits,
        close_timeout: float,
        remote: str,
    ) -> None:
        self.remote = remote
        self._faults = faults
        self._counters = counters
        self._limits = limits
        self._close_timeout = close_timeout
        self._loop = asyncio.get_running_loop()
        self._queue: deque[_Entry[ItemT]] = deque()
        self._size = 0
        self._tags: Counter[str] = Counter()
        self._wakeup = asyncio.Event()
        self._cut_timer: asyncio.TimerHandle | None = None
        self.close_requested: tuple[int, str] | None = None
        """The close this side asked for, if any (code, reason)."""
        self.aborted = False
        self.disconnected = False
        """The transport reported the connection gone (nothing more can be sent)."""
        self.finished = asyncio.Event()
        """Set by the endpoint once the connection's handling is done."""

    # -- what the hub sees -------------------------------------------------------------

    @property
    def open(self) -> bool:
        """Whether more can be queued (no close asked for, not aborted, not gone)."""
        return self.close_requested is None and not self.aborted and not self.disconnected

    def in_flight(self, tag: str) -> int:
        """Queued items put with ``tag`` (a request type) and not written yet."""
        return self._tags[tag]

    @property
    def queued(self) -> tuple[int, int]:
        """(frames, bytes) waiting to be written."""
        return len(self._queue), self._size

    def close(self, code: int, reason: str) -> None:
        """Queue a close with ``code``/``reason`` after what is already queued."""
        if self.open:
            self.close_requested = (code, reason)
            self._put(self._close_item(code, reason), 0)

    def abort(self) -> None:
        """Cut the connection now, without a close."""
        if self.aborted or self.disconnected:
            return
        self.aborted = True
        self._wakeup.set()
        self._cut()

    # -- for the transports ---------------------------------------------------------------

    def _put(self, item: ItemT, size: int, tag: str | None = None) -> None:
        """Queue ``item`` (``size`` bytes); overflowing the limits closes the connection."""
        self._queue.append(_Entry(self._loop.time() + self._faults.latency, item, size, tag))
        self._size += size
        if tag is not None:
            self._tags[tag] += 1
        self._wakeup.set()
        limits = self._limits
        # One item larger than the byte limit may go out alone.
        if len(self._queue) > limits.frames or (len(self._queue) > 1 and self._size > limits.size):
            self._overflow()

    def _overflow(self) -> None:
        frames, size = self.queued
        self._counters.bump("slow_consumers")
        log.info(
            "closing %s: slow consumer (%d frames, %d bytes queued)", self.remote, frames, size
        )
        self._queue.clear()
        self._size = 0
        self._tags.clear()
        self.close_requested = None
        self.close(*SLOW_CONSUMER)
        # The client does not read: the writer may be stuck on a full socket buffer.
        self._cut_timer = self._loop.call_later(self._close_timeout, self.abort)

    def _untag(self, tag: str) -> None:
        # Drop a tag at zero: a client choosing request types must not grow the counter.
        left = self._tags[tag] - 1
        if left > 0:
            self._tags[tag] = left
        else:
            self._tags.pop(tag, None)

    @abc.abstractmethod
    def _close_item(self, code: int, reason: str) -> ItemT:
        """The queue item that closes the connection."""

    @abc.abstractmethod
    async def _write(self, item: ItemT) -> bool:
        """Write one item; return True when it was the close (the writer then ends).

        ``ConnectionError``, ``OSError`` or ``RuntimeError`` mean the link broke.
        """

    @abc.abstractmethod
    def _cut(self) -> None:
        """Drop the TCP connection (no close frame)."""

    # -- the writer ----------------------------------------------------------------------

    async def run_writer(self) -> None:
        """Write queued items in order until the close went out or the link broke."""
        try:
            while True:
                while not self._queue:
                    if self.aborted or self.disconnected:
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                entry = self._queue.popleft()
                self._size -= entry.size
                delay = entry.due - self._loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await self._faults.wait_running()
                if entry.tag is not None:
                    self._untag(entry.tag)
                if self.aborted or self.disconnected:
                    return
                try:
                    if await self._write(entry.item):
                        return
                except (ConnectionError, OSError, RuntimeError) as exc:
                    # The peer went away while we were writing; the reader sees it too.
                    log.debug("write to %s failed: %s", self.remote, exc)
                    self.abort()
                    return
        finally:
            if self._cut_timer is not None:
                self._cut_timer.cancel()
