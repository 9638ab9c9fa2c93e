"""Who writes the session's frames on the current connection, and from which task.

A caller that queued a request writes it from its own task (:meth:`Writer.write_now`):
no task switch on the hot path. Whatever else is waiting is written by a writer task
that exists only while there is something to write, in the connection's task group;
an idle client holds none. The framing and batching themselves are
:class:`~rtclient._outgoing.Outgoing`'s.
"""

from __future__ import annotations

import asyncio

from ._outgoing import Outgoing
from .session import Session

__all__ = ["Writer"]


class Writer:
    """The writing side of the Client over successive connections."""

    __slots__ = ("_group", "_out", "_session", "_task")

    def __init__(self, session: Session) -> None:
        self._session = session
        self._out: Outgoing | None = None
        self._group: asyncio.TaskGroup | None = None
        self._task: asyncio.Task[None] | None = None

    def attach(self, out: Outgoing, group: asyncio.TaskGroup) -> None:
        """A connection is open: write on ``out``, a writer task lives in ``group``."""
        self._out, self._group = out, group
        self.kick()

    def stop(self) -> None:
        """The connection is ending: cancel the writer task (it belongs to its group)."""
        if self._task is not None:
            self._task.cancel()

    def detach(self) -> None:
        """The connection and its task group are gone: nothing to write on until the next."""
        self._out = None
        self._group = None

    def kick(self) -> None:
        """Start the connection's writer task unless someone is writing already.

        The task lives only while there is something to write: an idle client holds no
        writer (a caller writing its own request needs none either, see write_now).
        """
        out, group = self._out, self._group
        if self._task is not None and self._task.done():
            # Cancelled with its connection before it ever ran: its finally never cleared it.
            self._task = None
        if out is None or group is None or out.busy or self._task is not None:
            return  # no connection yet, or whoever writes takes this too
        if out.unsent or self._session.has_data_to_send():
            writing = self._write(out)
            try:
                self._task = group.create_task(writing, name="rtclient writer")
            except RuntimeError:
                # The connection's group is finishing (its connection is ending, a
                # caller got here first): what is queued goes out after the reconnect.
                writing.close()

    async def _write(self, out: Outgoing) -> None:
        try:
            await out.flush()
        finally:
            if self._task is asyncio.current_task():
                self._task = None

    async def write_now(self) -> None:
        """Write what the session has now from the caller's task, or leave it to the writer.

        One round only: what other callers queue while this one waits on a full socket
        buffer is the writer task's, started when this caller is done.
        """
        out = self._out
        if out is not None and out.inline and self._task is None:
            try:
                await out.flush(once=True)  # waits only on a full socket buffer
            finally:
                self.kick()  # the rest, or what a cancelled caller left
        else:
            self.kick()
