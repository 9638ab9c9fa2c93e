"""Cancellable one-shot timers that belong to the server.

The hub schedules token-expiry and typing auto-stop callbacks here; ``cancel_all``
(called by ``FakeServer.stop``) guarantees none fires after the server stopped.  They
are loop timer handles, not tasks: a callback must not await.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

__all__ = ["Scheduler", "Timer", "Timers"]


class Timer(Protocol):
    def cancel(self) -> None: ...


class Scheduler(Protocol):
    """What the hub needs to run something later."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer: ...


class _Handle:
    __slots__ = ("_handle", "_owner")

    def __init__(self, owner: Timers) -> None:
        self._owner = owner
        self._handle: asyncio.TimerHandle | None = None

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._owner._live.discard(self)


class Timers:
    """A :class:`Scheduler` on the running loop that remembers its live timers."""

    def __init__(self) -> None:
        self._live: set[_Handle] = set()

    def __len__(self) -> int:
        return len(self._live)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        handle = _Handle(self)

        def fire() -> None:
            self._live.discard(handle)
            callback()

        handle._handle = asyncio.get_running_loop().call_later(max(0.0, delay), fire)
        self._live.add(handle)
        return handle

    def cancel_all(self) -> None:
        for handle in list(self._live):
            handle.cancel()
