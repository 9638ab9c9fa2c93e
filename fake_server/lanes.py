"""Ordered request lanes: one connection's requests run one after the other.

With a store whose calls wait for Redis (:class:`~fake_server.redis_store.RedisStore`),
a request cannot be carried out inline as the frame arrives.  Running each request in
a task of its own would let a fast request overtake a slow one, and the client's acks
would come back out of order.  A :class:`Lane` per connection instead holds the
connection's pending work (coroutines, in arrival order) and runs it in one task, one
item at a time: replies leave in request order, and a connection never has more than
one request at Redis.  The task exists only while the lane has work.

The reader of a connection waits on :meth:`Lane.wait_room` before it reads more, so a
client that sends faster than Redis answers is slowed down by TCP (backpressure)
instead of filling the server's memory.

Every task belongs to a :class:`TaskSet`, which the server closes on stop.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Coroutine
from typing import Any

__all__ = ["Lane", "TaskSet"]

log = logging.getLogger("fake_server.lanes")

RECANCEL_AFTER = 0.5
"""Seconds :meth:`TaskSet.close` waits before it cancels a task that goes on again."""

LANE_ROOM = 64
"""Pending items past which a connection's reader waits before reading more."""


class TaskSet:
    """Tasks owned by one server: :meth:`close` cancels and awaits them all."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        """Run ``coro`` in a task owned by this set (its failure is logged)."""
        if self._closed:
            coro.close()
            raise RuntimeError("TaskSet closed")
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    async def close(self) -> None:
        """Cancel every task and wait for them; no task may be spawned after.

        A task is cancelled again until it ends: on Python 3.11 a cancellation that
        meets an expiring ``asyncio.timeout`` can come out as ``TimeoutError``, which a
        retry loop would take for one more failure and go on.
        """
        self._closed = True
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=RECANCEL_AFTER)


class Lane:
    """One connection's pending work, run in order by one task of ``tasks``."""

    __slots__ = ("_name", "_queue", "_room", "_task", "_tasks", "closed")

    def __init__(self, tasks: TaskSet, name: str) -> None:
        self._tasks = tasks
        self._name = name
        self._queue: deque[Coroutine[Any, Any, None]] = deque()
        self._task: asyncio.Task[Any] | None = None
        self._room: asyncio.Event | None = None
        self.closed = False

    def __len__(self) -> int:
        return len(self._queue) + (self._task is not None)

    def submit(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` after everything submitted before (dropped once closed)."""
        if self.closed:
            work.close()
            return
        self._queue.append(work)
        if self._task is None:
            self._task = self._tasks.spawn(self._run(), name=f"lane {self._name}")

    async def wait_room(self) -> None:
        """Return once fewer than :data:`LANE_ROOM` items are pending (or the lane closed)."""
        while len(self._queue) >= LANE_ROOM and not self.closed:
            if self._room is None:
                self._room = asyncio.Event()
            await self._room.wait()

    def full(self) -> bool:
        return len(self._queue) >= LANE_ROOM

    async def _run(self) -> None:
        try:
            while self._queue and not self.closed:
                work = self._queue.popleft()
                if self._room is not None and len(self._queue) < LANE_ROOM:
                    self._room.set()
                    self._room = None
                try:
                    await work
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("request on lane %s failed", self._name)
        finally:
            self._task = None
            if self._room is not None:  # a reader waiting for room must not wait for ever
                self._room.set()
                self._room = None
            if self.closed:
                self._drop()

    def close(self) -> None:
        """Drop pending work and stop after the item that runs now (its reply is dropped)."""
        self.closed = True
        if self._room is not None:
            self._room.set()
            self._room = None
        if self._task is None:
            self._drop()

    def _drop(self) -> None:
        while self._queue:
            self._queue.popleft().close()
