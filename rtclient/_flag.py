"""A one-bit signal for asyncio: :class:`asyncio.Event` without its per-instance deque.

An idle client holds several such signals (writer wake-up, stop, progress, the
dispatcher's room); ``asyncio.Event`` allocates a ``deque`` of waiters for each (about
760 bytes) whether or not anything ever waits. :class:`Flag` allocates waiters only
while something waits. Same semantics as ``Event``: ``wait`` returns at once when set,
``set`` wakes every waiter, ``clear`` affects only later waits.
"""

from __future__ import annotations

import asyncio

__all__ = ["Flag"]


class Flag:
    """``asyncio.Event``'s ``set`` / ``clear`` / ``is_set`` / ``wait``, allocated lazily."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def __repr__(self) -> str:
        waiting = len(self._waiters) if self._waiters else 0
        return f"<Flag {'set' if self._set else 'unset'}, {waiting} waiting>"

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        """Set the flag and wake everything waiting for it."""
        if self._set:
            return
        self._set = True
        waiters, self._waiters = self._waiters, None
        for future in waiters or ():
            if not future.done():
                future.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> None:
        """Return once the flag is set (at once if it is)."""
        if self._set:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        waiters = self._waiters
        waiters.append(future)
        try:
            await future
        finally:
            if future in waiters:
                waiters.remove(future)
