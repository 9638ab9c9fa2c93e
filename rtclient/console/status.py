"""The model behind ``rtclient chat``'s bottom toolbar. Time is an argument, as in the core.

- :class:`LinkStatus` follows :class:`~rtclient.events.StateChanged` and says
  "connected", "recovering", "reconnecting in 2.1 s", "offline · retry in 2.1 s", …;
- :class:`TypingTracker` remembers who is typing where, until they stop or time out;
- :class:`TypingThrottle` decides when to send our own ``typing:start`` (rate-limited);
- :class:`EchoFilter` hides the server's echo of our own messages (their ack says it);
- :func:`toolbar_text` puts it all on one line.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from ..events import ConnectionState, Event, StateChanged
from ..quality import QualitySnapshot
from .render import seconds_text

__all__ = ["EchoFilter", "LinkStatus", "TypingThrottle", "TypingTracker", "toolbar_text"]

_S = ConnectionState


class LinkStatus:
    """The connection as the toolbar shows it, from the ``state`` events."""

    def __init__(self) -> None:
        self.state = _S.IDLE
        self.retry_at: float | None = None
        self.unreachable = False
        """True when the server could not be reached (an attempt failed), not just lost."""
        self.error: BaseException | None = None

    def update(self, change: StateChanged, now: float) -> None:
        """Take a state change that happened at ``now``."""
        self.state = change.new
        self.error = change.error
        if change.new is _S.RECONNECTING:
            self.retry_at = None if change.delay is None else now + change.delay
            self.unreachable = change.old in (_S.CONNECTING, _S.RECONNECTING)
        else:
            self.retry_at = None
            self.unreachable = False

    def label(self, now: float) -> str:
        """``connected``, ``reconnecting in 2.1 s`` (counting down), ``offline …``, ``closed``."""
        state = self.state
        if state is _S.RECONNECTING:
            prefix = "offline · retry" if self.unreachable else "reconnecting"
            if self.retry_at is not None and self.retry_at - now > 0.05:
                return f"{prefix} in {seconds_text(self.retry_at - now)}"
            return "offline · connecting…" if self.unreachable else "reconnecting…"
        if state is _S.CONNECTING:
            return "connecting…"
        if state is _S.IDLE:
            return "offline"
        return str(state.value)


class TypingTracker:
    """Who is typing in which room, from ``typing:start`` / ``typing:stop`` events.

    A ``typing:start`` counts for ``linger`` seconds (the server stops it after 5 s of
    silence anyway); a message from the user ends it.
    """

    def __init__(self, *, linger: float = 6.0) -> None:
        self.linger = linger
        self._until: dict[tuple[str, str], float] = {}

    def update(self, event: Event, now: float) -> bool:
        """Take an event; True if who is typing changed."""
        room = event.room or event.data.get("roomId")
        user = event.data.get("userId") if event.name.startswith("typing:") else event.sender
        if not isinstance(room, str) or not isinstance(user, str):
            return False
        key = (room, user)
        if event.name == "typing:start":
            self._until[key] = now + self.linger
            return True
        if event.name in ("typing:stop", "chat:message", "user:left"):
            return self._until.pop(key, None) is not None
        return False

    def typing(self, now: float) -> list[tuple[str, str]]:
        """``(room, user)`` pairs typing at ``now``, in the order they started."""
        for key in [k for k, until in self._until.items() if until <= now]:
            del self._until[key]
        return list(self._until)


class TypingThrottle:
    """Says when to send our ``typing:start``: at most once per ``interval`` seconds."""

    def __init__(self, *, interval: float = 2.0) -> None:
        self.interval = interval
        self._last: float | None = None

    def should_send(self, now: float) -> bool:
        """True if a ``typing:start`` may go out at ``now`` (and counts it as sent)."""
        if self._last is not None and now - self._last < self.interval:
            return False
        self._last = now
        return True

    def reset(self) -> bool:
        """The message was sent: the next keystroke may signal again. True if we were typing."""
        was, self._last = self._last is not None, None
        return was


class EchoFilter:
    """Hides the server's echo of our own messages; the ack line already says it arrived.

    The echo (a live ``chat:message`` from us) and the ack may come in either order.
    While our sends are outstanding an echo of ours is held back; the ack of the same
    message id drops it. Echoes no ack claims (our user on another terminal) are
    released once nothing is outstanding.
    """

    def __init__(self, *, remember: int = 1000) -> None:
        self.outstanding = 0
        self._acked: OrderedDict[str, None] = OrderedDict()
        self._held: dict[str, Event] = {}
        self._remember = remember

    def sent(self) -> None:
        """A send of ours is under way."""
        self.outstanding += 1

    def settled(self, message_id: str | None) -> list[Event]:
        """A send ended (``message_id`` if acked); returns held echoes to show now."""
        self.outstanding = max(0, self.outstanding - 1)
        if message_id is not None:
            self._held.pop(message_id, None)
            self._acked[message_id] = None
            while len(self._acked) > self._remember:
                self._acked.popitem(last=False)
        if self.outstanding:
            return []
        released = list(self._held.values())
        self._held.clear()
        return released

    def admit(self, event: Event, me: str | None) -> bool:
        """True if ``event`` should be shown now (False: dropped or held back)."""
        if event.replayed or me is None or event.sender != me or event.message_id is None:
            return True
        if event.message_id in self._acked:
            return False
        if self.outstanding:
            self._held[event.message_id] = event
            return False
        return True


@dataclass(frozen=True, slots=True)
class ToolbarFacts:
    """Everything the toolbar shows, gathered at one instant."""

    status: str
    quality: QualitySnapshot
    queued: int
    room: str | None
    user: str | None
    typing: list[tuple[str, str]]
    endpoint: str | None = None
    """The node in use (host:port), shown when the client was given several URLs."""


def toolbar_text(facts: ToolbarFacts) -> str:
    """`` connected │ rtt 12 ms │ quality good │ queued 0 │ alice @ lobby │ bob is typing…``."""
    quality = facts.quality
    rtt = quality.srtt if quality.srtt is not None else quality.p50
    parts = [
        facts.status if facts.endpoint is None else f"{facts.status} · {facts.endpoint}",
        "rtt -" if rtt is None else f"rtt {rtt * 1000:.0f} ms",
        f"quality {quality.level.value}",
        f"queued {facts.queued}",
        # The user is known once the server said who we are (not before the first connect).
        f"{facts.user} @ {facts.room or '(no room)'}" if facts.user else facts.room or "(no room)",
    ]
    if facts.typing:
        names = [user if room == facts.room else f"{user} ({room})" for room, user in facts.typing]
        verb = "is" if len(names) == 1 else "are"
        parts.append(f"{', '.join(names[:3])} {verb} typing…")
    return " " + " │ ".join(parts)
