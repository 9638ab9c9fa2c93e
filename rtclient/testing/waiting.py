"""Waiting helpers for tests: poll a condition with a deadline, collect a client's messages."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..client import Client
    from ..events import Event, Gap

__all__ = ["Inbox", "wait_until"]


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]],
    timeout: float = 5.0,
    *,
    interval: float = 0.005,
    message: str | None = None,
) -> None:
    """Return once ``predicate()`` is true; raise ``TimeoutError`` after ``timeout`` s.

    ``predicate`` may be async. Use it for conditions that span a server and several
    clients and have no single event to wait on; for one client's state prefer
    ``client.wait_for(state, timeout=...)``.
    """
    try:
        async with asyncio.timeout(timeout):
            while True:
                result = predicate()
                if inspect.isawaitable(result):
                    result = await result
                if result:
                    return
                await asyncio.sleep(interval)
    except TimeoutError:
        what = message or getattr(predicate, "__name__", repr(predicate))
        raise TimeoutError(f"still false after {timeout} s: {what}") from None


class Inbox:
    """Collects the chat messages (and gaps) a client delivers, from now on.

    ::

        inbox = Inbox(client)
        await other.send("lobby", "hi")
        (event,) = await inbox.wait_for(1)
    """

    def __init__(self, client: Client, name: str = "chat:message") -> None:
        self.events: list[Event] = []
        self.gaps: list[Gap] = []
        self._changed = asyncio.Event()
        client.on(name, self._add)
        client.on("gap", self.gaps.append)

    def _add(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()

    def texts(self, room: str | None = None) -> list[str | None]:
        """The texts received, in order (in ``room`` only, if given)."""
        return [e.text for e in self.events if room is None or e.room == room]

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[Event]:
        """Wait until ``count`` messages have arrived in all; return them."""
        try:
            async with asyncio.timeout(timeout):
                while len(self.events) < count:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(
                f"{len(self.events)} of {count} messages after {timeout} s: {self.texts()}"
            ) from None
        return self.events[:count]
