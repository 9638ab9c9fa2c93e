"""The write side of one connection: the session's envelopes to the wire, in order.

Two kinds of writer share it. The connection's writer task is woken when the session
has something to send (an ack let the next queued message go, a retransmission, the
recovery plan). An application call (``send()``, ``join()``, ``request()`` …) writes
its own request from its own task when nobody else is writing: no task switch before
the frame leaves, which is most of what a request/ack round trip costs the client when
one message is in flight.

Only one writes at a time, so frames leave in the session's order. The writer task
drains everything the session has; a caller writes one round (what the session has
when it starts) and leaves whatever came meanwhile to the writer task, so that a
caller is never kept writing other callers' frames on a slow link. A writer only ever
waits once a frame is handed to the transport (on a full socket buffer); if it is
cancelled there, the envelopes it took from the session and had not written yet stay
here for the next writer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from .errors import ConnectionLost, TransportError
from .events import ErrorEvent
from .session import Session
from .transports.base import Connection

__all__ = ["Outgoing"]

log = logging.getLogger("rtclient")


class Outgoing:
    """What is being written on one connection, and by whom.

    :param batch_max: pack up to this many envelopes into one ``batch`` frame (only on
        servers whose welcome lists the ``batch`` feature, and only when ``batchable``).
    :param batch_wait: linger this long for a batch to fill up.
    :param report: where an envelope that cannot be encoded is reported.
    """

    __slots__ = (
        "_counters",
        "_report",
        "batch_max",
        "batch_wait",
        "batchable",
        "busy",
        "conn",
        "session",
        "unsent",
    )

    def __init__(
        self,
        conn: Connection,
        session: Session,
        *,
        batchable: bool,
        batch_max: int,
        batch_wait: float,
        report: Callable[[ErrorEvent], None],
        counters: dict[str, int],
    ) -> None:
        self.conn = conn
        self.session = session
        self.batchable = batchable
        """The transport carries ``batch`` frames (the server must offer them too)."""
        self.batch_max = batch_max
        self.batch_wait = batch_wait
        self._report = report
        self._counters = counters
        self.busy = False
        """A writer is under way (it writes whatever else arrives meanwhile)."""
        self.unsent: list[dict[str, Any]] = []
        """Frames taken from the session and not written yet."""

    def _batching(self) -> bool:
        if self.batch_max == 1 or not self.batchable:
            return False
        return "batch" in self.session.welcome.features

    @property
    def inline(self) -> bool:
        """Whether a caller may write now from its own task (nobody writes, no batching)."""
        return not self.busy and not self._batching()

    async def flush(self, *, once: bool = False) -> None:
        """Write what is unsent and then everything the session has, until it has nothing.

        With ``once``, take frames from the session one time only and then return even
        if it has more (the caller must then see that someone writes it).
        Returns quietly when the connection is gone (the reader reports that); raises
        only CancelledError (what was taken and not written stays in :attr:`unsent`).
        """
        unsent = self.unsent
        taken = False
        self.busy = True
        try:
            while True:
                if not unsent:
                    if once and taken:
                        return
                    taken = True
                    unsent += await self._next_frames()
                    if not unsent:
                        return
                envelope = unsent.pop(0)
                try:
                    await self.conn.send(envelope)
                except (TypeError, ValueError) as exc:  # unencodable: a local bug
                    log.error("cannot encode %s: %s", envelope.get("type"), exc)
                    self._report(ErrorEvent("ENCODE", str(exc), exc))
        except (ConnectionLost, TransportError):
            unsent.clear()  # the session sends what is unacknowledged on the next one
        finally:
            self.busy = False

    async def _next_frames(self) -> list[dict[str, Any]]:
        """The session's next envelopes, packed into ``batch`` frames when batching."""
        envelopes = self.session.data_to_send()
        if not envelopes or not self._batching():
            return envelopes
        if len(envelopes) < self.batch_max and self.batch_wait > 0:
            await asyncio.sleep(self.batch_wait)  # linger: let the batch fill up
            envelopes += self.session.data_to_send()
        frames: list[dict[str, Any]] = []
        for start in range(0, len(envelopes), self.batch_max):
            chunk = envelopes[start : start + self.batch_max]
            if len(chunk) == 1:
                frames.append(chunk[0])
            else:
                frames.append({"type": "batch", "payload": {"items": chunk}})
                self._counters["batches"] += 1
        return frames
