"""Rate-limit holds and pacing of message sends: pure decisions from ``now``.

A RATE_LIMIT or INTERNAL reply holds every message for the server's ``retryAfter``
(capped); after a rate limit, messages go out one at a time, a little slower than the
server's rate, until the backlog is gone, so that a limited message is sent once more,
not once per window. The pace probes back up when no rate limit comes for a while.
"""

from __future__ import annotations

from .hints import parse_delay

__all__ = ["HOLD_MIN", "PACE_DECAY", "PACE_GROWTH", "PACE_MARGIN", "PACE_MAX", "Pacer"]

HOLD_MIN = 0.01
"""The shortest hold after a RATE_LIMIT or INTERNAL reply: "retryAfter: 0" is no licence
to resend at once (each refusal would bring a resend, one per round trip)."""
PACE_MAX = 1.0
"""While rate limited, messages go out one at a time at most this far apart."""
PACE_MARGIN = 1.1
"""The pace is the server's retryAfter and a tenth: a little under its rate, not at it."""
PACE_GROWTH = 1.25
"""A message limited although it was paced makes the pace this much slower."""
PACE_RELEASE = 1.0
"""Each time no rate limit came for this long, the pace shrinks by PACE_DECAY; it ends
when nothing is queued or it is under HOLD_MIN."""
PACE_DECAY = 0.8
"""One rate limit must not slow a steady sender for ever: the pace probes back up."""
DEFAULT_HOLD = 0.5
"""The hold after a refusal that names no (readable) retryAfter."""


class Pacer:
    """When messages may go out after the server refused some for load."""

    def __init__(self, max_server_delay: float) -> None:
        self.max_server_delay = max_server_delay
        self.hold_until = 0.0
        """No message goes out before this time (0: no hold)."""
        self.pace = 0.0
        """While rate limited: the least time between two message sends (0: no pacing)."""
        self.paced_at = 0.0
        self._limited_at = 0.0
        self._paced_since = 0.0

    def refused(self, code: str, retry_after: object, sent_at: float | None, now: float) -> None:
        """The server refused a message sent at ``sent_at`` with RATE_LIMIT or INTERNAL."""
        hint = parse_delay(retry_after)
        wait = min(hint, self.max_server_delay) if hint is not None else DEFAULT_HOLD
        wait = max(wait, HOLD_MIN)
        self.hold_until = max(self.hold_until, now + wait)
        if code == "RATE_LIMIT":
            paced = bool(self.pace) and (sent_at or 0.0) > self._paced_since
            if not self.pace:
                self._paced_since = now
            # Limited although paced (the path bunched our sends up): slow down.
            grown = self.pace * PACE_GROWTH if paced else self.pace
            self.pace = min(PACE_MAX, max(grown, wait * PACE_MARGIN))
            self._limited_at = now

    def tick(self, now: float) -> None:
        """Time passed: a hold that is over ends."""
        if self.hold_until and now >= self.hold_until:
            self.hold_until = 0.0

    def relax(self, now: float, *, queued: bool) -> None:
        """No rate limit for a while shortens the pace; an empty queue or a short pace ends it."""
        if self.pace and now - self._limited_at >= PACE_RELEASE:
            pace = self.pace * PACE_DECAY
            self.pace = pace if queued and pace >= HOLD_MIN else 0.0
            self._limited_at = now

    def deadline(self, *, queued: bool) -> float | None:
        """When the caller's timer must fire for the hold or the pace (None: not needed)."""
        deadlines = []
        if self.hold_until:
            deadlines.append(self.hold_until)
        if self.pace and queued:
            deadlines.append(max(self.hold_until, self.paced_at + self.pace))
        return min(deadlines, default=None)

    def window(self, now: float, budget: int) -> tuple[int, float | None]:
        """How many messages may go now out of ``budget``, and when to look again.

        Returns ``(n, wake)``: send ``n`` messages now (0: none); ``wake`` is a deadline
        the caller's timer must know (a hold or the next paced send), or None.
        """
        if self.hold_until > now:
            return 0, self.hold_until
        if self.pace:
            if now < self.paced_at + self.pace:
                return 0, self.paced_at + self.pace
            budget = min(budget, 1)
        if budget <= 0:
            return 0, None
        if self.pace:
            self.paced_at = now
        return budget, None
