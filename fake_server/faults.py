"""The fault state: what the server is currently told to do wrong.

The hub and the endpoints consult it; :class:`~fake_server.server.FakeServer` and the
``/admin/faults`` endpoint change it.  Every ``take_*`` method consumes one unit of a
fault armed for the next *n* occurrences.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

__all__ = ["FaultState", "Rejection"]


@dataclass(frozen=True, slots=True)
class Rejection:
    """How to refuse one connection attempt.

    ``status`` < 1000 is an HTTP status for the upgrade response; >= 1000 is a
    WebSocket close code sent right after ``connected``.
    """

    status: int
    retry_after: float | None = None


class FaultState:
    """Armed faults.  Create it inside the event loop (it owns an ``asyncio.Event``)."""

    def __init__(self) -> None:
        self._running = asyncio.Event()
        self._running.set()
        self.latency: float = 0.0
        """Seconds every outgoing frame is held back."""
        self._rejections: list[Rejection] = []
        self.draining: Rejection | None = None
        """Set while the server drains: every new handshake gets this refusal."""
        self._lose_acks = 0
        self._duplicate_events = 0

    def __repr__(self) -> str:
        return (
            f"FaultState(paused={self.paused}, latency={self.latency}, "
            f"rejections={len(self._rejections)}, lose_acks={self._lose_acks}, "
            f"duplicate_events={self._duplicate_events})"
        )

    # -- frozen peer -------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    async def wait_running(self) -> None:
        """Return at once unless paused; then return on :meth:`resume`."""
        await self._running.wait()

    # -- counted faults ----------------------------------------------------------------

    def reject_next(self, n: int, status: int, retry_after: float | None = None) -> None:
        self._rejections = [Rejection(status, retry_after)] * n

    def take_rejection(self) -> Rejection | None:
        if self.draining is not None:
            return self.draining  # not a counted fault: every handshake, until stopped
        return self._rejections.pop() if self._rejections else None

    def lose_next_acks(self, n: int) -> None:
        self._lose_acks = n

    def take_lost_ack(self) -> bool:
        if self._lose_acks <= 0:
            return False
        self._lose_acks -= 1
        return True

    def duplicate_next_events(self, n: int) -> None:
        self._duplicate_events = n

    def take_duplicate(self) -> bool:
        if self._duplicate_events <= 0:
            return False
        self._duplicate_events -= 1
        return True
