"""Hands events to the application: handlers registered with ``on`` and ``events()``.

One dispatcher task delivers everything in the order the session produced it.
Handlers may be sync or async; an async handler is awaited before the next event is
delivered, so handlers see events in order. A handler that raises is logged and
counted and never stops delivery.

Backpressure: the queue between the session and the handlers is bounded by
``max_pending`` (checked by the reader, which stops reading the socket until the
handlers caught up), and each ``events()`` iterator's queue by the same bound (a slow
iterator slows delivery, and so, in turn, reading).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from ._flag import Flag
from .events import Delivered, ErrorEvent, Event, Gap, QualityChanged, StateChanged

__all__ = ["Delivered", "Dispatcher", "Handler"]

Handler = Callable[[Any], Awaitable[None] | None]

_END = object()

# Names for what the client itself reports; server events use their own names.
KIND_NAMES: dict[type, str] = {
    StateChanged: "state",
    Gap: "gap",
    ErrorEvent: "error",
    QualityChanged: "quality",
}


def name_of(item: Delivered) -> str:
    """The ``on()`` name that ``item`` is delivered under."""
    return item.name if isinstance(item, Event) else KIND_NAMES[type(item)]


class Dispatcher:
    """Queue between the session and the application's handlers and iterators."""

    def __init__(
        self,
        logger: logging.Logger,
        after: Callable[[Delivered], None] | None = None,
        *,
        max_pending: int = 10_000,
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be positive")
        self.max_pending = max_pending
        # A list read from ``_head`` on, not an asyncio.Queue: an idle client's empty
        # queue costs a few bytes instead of four deques.
        self._items: list[Delivered | object] = []
        self._head = 0
        self._ready = Flag()
        self._room = Flag()
        self._room.set()
        # Tuples, replaced (not mutated) by on()/off(): delivery iterates without copying.
        self._handlers: dict[str, tuple[Handler, ...]] = {}
        self._subscribers: set[asyncio.Queue[Delivered | object]] = set()
        self._log = logger
        self._ended = False
        self._ending = False
        self._after = after
        self._busy = False
        self.handler_errors = 0
        self.unheard = 0
        """Items nobody listened to, passed over without a trip through the queue."""

    def on(self, name: str, handler: Handler) -> None:
        """Call ``handler`` for every item named ``name`` (``"*"``: every server event)."""
        self._handlers[name] = (*self._handlers.get(name, ()), handler)

    def off(self, name: str, handler: Handler) -> None:
        """Stop calling ``handler`` for ``name``; unknown handlers are ignored."""
        handlers = list(self._handlers.get(name, ()))
        if handler in handlers:
            handlers.remove(handler)
            if handlers:
                self._handlers[name] = tuple(handlers)
            else:
                del self._handlers[name]  # nobody listens to it any more

    def put(self, item: Delivered) -> None:
        """Queue ``item`` for delivery (never blocks; see :meth:`wait_for_room`).

        An item no handler and no iterator listens to, arriving while nothing is queued
        or being delivered, is passed over at once (``after`` still sees it, in order):
        a bot that does not listen to its own echoes does not pay a task switch for each.
        """
        items = self._items
        if not (self._busy or self._subscribers or len(items) > self._head or self._heard(item)):
            self.unheard += 1
            if self._after is not None:
                self._after(item)
            return
        items.append(item)
        self._ready.set()
        if len(items) - self._head >= self.max_pending:
            self._room.clear()

    def _heard(self, item: Delivered) -> bool:
        if isinstance(item, Event):
            return item.name in self._handlers or "*" in self._handlers
        return KIND_NAMES[type(item)] in self._handlers

    @property
    def streams(self) -> int:
        """How many :meth:`stream` iterators are subscribed (they subscribe on first use)."""
        return len(self._subscribers)

    @property
    def backlog(self) -> int:
        """Items queued and not yet handed to the handlers."""
        return len(self._items) - self._head

    async def wait_for_room(self) -> None:
        """Return once the backlog is under ``max_pending`` (the reader waits here).

        While it waits the reader does not read the socket, so the server's frames
        stay in the network buffers: TCP pushes back instead of memory growing.
        """
        await self._room.wait()

    def end(self) -> None:
        """Deliver what is queued, then stop; iterators end after the last item.

        From now on an iterator nobody reads any more loses its oldest items rather
        than blocking the end (and so ``close()``).
        """
        self._ending = True
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()  # unblocks a put the dispatcher may be waiting in
        self._items.append(_END)
        self._ready.set()

    async def _offer(self, queue: asyncio.Queue[Delivered | object], item: object) -> None:
        if not self._ending:
            await queue.put(item)  # a slow events() consumer slows delivery down
            return
        if queue.full():
            queue.get_nowait()
        queue.put_nowait(item)

    async def run(self) -> None:
        """Deliver items until :meth:`end`. Runs as one task of the client's task group."""
        resume_below = self.max_pending // 2 + 1
        while True:
            self._busy = False
            while self._head == len(self._items):
                self._ready.clear()
                await self._ready.wait()
            item = self._take()
            self._busy = True
            if len(self._items) - self._head < resume_below:
                self._room.set()  # hysteresis: resume reading once half drained
            if item is _END:
                break
            delivered: Delivered = item  # type: ignore[assignment]
            if self._subscribers:
                for queue in list(self._subscribers):
                    await self._offer(queue, delivered)
            if isinstance(delivered, Event):
                handlers = self._handlers.get(delivered.name, ())
                wildcard = self._handlers.get("*", ())
                if wildcard:
                    handlers = handlers + wildcard
            else:
                handlers = self._handlers.get(KIND_NAMES[type(delivered)], ())
            for handler in handlers:
                # Inline rather than a coroutine per call: this runs for every event.
                try:
                    result = handler(delivered)
                    if result is not None and inspect.isawaitable(result):
                        await result
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self.handler_errors += 1
                    self._log.exception("handler %r for %s failed", handler, name_of(delivered))
            if self._after is not None:
                self._after(delivered)  # e.g. record the cursor: the app has had the event
        self._ended = True
        self._room.set()
        for queue in list(self._subscribers):
            if queue.full():  # an iterator nobody reads any more must not block close()
                queue.get_nowait()
            queue.put_nowait(_END)

    def _take(self) -> Delivered | object:
        """The next item (there is one), forgotten by the list."""
        items, head = self._items, self._head
        item = items[head]
        items[head] = None  # let it go once delivered
        if head + 1 == len(items):
            items.clear()
            self._head = 0
        elif head >= 1024 and head * 2 >= len(items):
            del items[: head + 1]  # compact now and then: amortised O(1) per item
            self._head = 0
        else:
            self._head = head + 1
        return item

    async def stream(self, *, events_only: bool = False) -> AsyncIterator[Delivered]:
        """Yield every item delivered from now on (only Events with ``events_only``),
        until the client closes."""
        queue: asyncio.Queue[Delivered | object] = asyncio.Queue(self.max_pending)
        if self._ended:
            return
        self._subscribers.add(queue)
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                assert isinstance(item, Event | Gap | StateChanged | QualityChanged | ErrorEvent)
                if events_only and not isinstance(item, Event):
                    continue
                yield item
        finally:
            self._subscribers.discard(queue)
