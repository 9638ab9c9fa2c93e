"""The inbox of a connection whose library delivers by callback (Socket.IO, memory).

What arrives is queued for ``recv``; once the connection closes, ``recv`` hands out what
was queued before, then raises :class:`~rtclient.errors.ConnectionLost` with the close
code and reason, every time it is called again (the close is sticky).

With a ``limit``, the producer can wait for room (:meth:`Inbox.wait_for_room`) before
reading more from the network: that is how backpressure reaches the socket. ``put``
itself never blocks and never drops: what was already read is kept, so the inbox holds
at most ``limit`` plus what one read produced. Once closed it never stops the producer:
the reader gets to the end of the link (a close's goodbye), and what it still reads is
kept.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from ..errors import ConnectionLost

__all__ = ["Inbox"]


class Inbox:
    """A queue for ``recv`` with a sticky close and an optional soft limit."""

    def __init__(self, limit: int | None = None) -> None:
        if limit is not None and limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._items: deque[Any] = deque()
        self._closed: tuple[int | None, str] | None = None
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self.waits = 0
        """How many times the producer waited for room (reading was paused)."""

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> tuple[int | None, str] | None:
        """``(code, reason)`` once closed, else None."""
        return self._closed

    def put(self, item: Any) -> None:
        """Queue ``item`` (never blocks; beyond the limit the producer should wait)."""
        self._items.append(item)
        self._arrived.set()
        self._check_room()

    def _check_room(self) -> None:
        # A closed inbox never stops the producer again: its reader must get to the
        # end of the link (what it still reads is kept for ``recv``, a frame or so).
        if self.limit is not None and len(self._items) >= self.limit and self._closed is None:
            self._room.clear()

    def insert(self, index: int, item: Any) -> None:
        """Queue ``item`` ahead of what was queued from ``index`` on (as :meth:`put`)."""
        self._items.insert(index, item)
        self._arrived.set()
        self._check_room()

    def close(self, code: int | None, reason: str) -> bool:
        """Mark the connection closed (the first close wins); False if it already was."""
        if self._closed is not None:
            return False
        self._closed = (code, reason)
        self._arrived.set()
        self._room.set()  # a producer waiting for room has nothing more to read
        return True

    async def get(self) -> Any:
        """The next item; ConnectionLost once the inbox is closed and empty."""
        while not self._items:
            if self._closed is not None:
                raise ConnectionLost(*self._closed)
            self._arrived.clear()
            await self._arrived.wait()
        item = self._items.popleft()
        if self.limit is not None and len(self._items) < self.limit:
            self._room.set()
        return item

    async def wait_for_room(self) -> None:
        """Return once the inbox is below its limit (or closed)."""
        if not self._room.is_set():
            self.waits += 1
            await self._room.wait()
