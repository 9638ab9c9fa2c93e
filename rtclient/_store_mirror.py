"""The Client's link to its :class:`~rtclient.store.Store`: restore on start, mirror after.

The session journals what changed (queued and acknowledged messages, rooms, cursors);
:meth:`StoreMirror.mirror` applies that journal to the store, whose buffering commits
it shortly after. Decisions stay in the session: this module only translates its change
records into Store calls.

Seam: the change records are matched here and nowhere else, so when the session's
records become typed (one class per change) only :meth:`StoreMirror.mirror` changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .events import Delivered, Event
from .journal import CursorForgotten, CursorSet, Enqueued, Removed, RoomsSet
from .session import Session
from .store import Store, StoredMessage

__all__ = ["StoreMirror"]

log = logging.getLogger("rtclient")


class StoreMirror:
    """Keeps ``store`` in step with ``session`` for one Client."""

    __slots__ = ("_clock_offset", "_session", "store")

    def __init__(self, store: Store, session: Session, *, clock_offset: float) -> None:
        self.store = store
        self._session = session
        self._clock_offset = clock_offset
        """From the session's monotonic clock to the store's wall clock (message times)."""
        session.track_changes = True

    async def restore(self, on_failure: Callable[[BaseException], None]) -> None:
        """Load the store into the session; if loading fails, close the store, call
        ``on_failure`` (which closes the session), then raise.

        A store left open would stay locked for every later Client of this process.
        """
        store = self.store
        state = await store.open()
        try:
            cursors = {room: (c.epoch, c.last_event_id) for room, c in state.cursors.items()}
            entries = [m.to_entry(clock_offset=self._clock_offset) for m in state.outbox]
            self._session.restore(state.rooms, cursors, entries)
        except BaseException as exc:
            try:
                await store.close()
            except Exception as close_error:  # the restore's error is the one to raise
                log.warning("closing the store after a failed restore: %r", close_error)
            finally:
                on_failure(exc)
            raise
        if state.rooms or entries:
            log.info("restored %d rooms and %d queued messages", len(state.rooms), len(entries))

    def mirror(self) -> None:
        """Apply the session's changes to the store (buffered: a commit follows shortly)."""
        store = self.store
        for change in self._session.store_changes():
            match change:
                case Enqueued(entry):
                    store.enqueue(StoredMessage.from_entry(entry, clock_offset=self._clock_offset))
                case Removed(message_id):
                    store.remove(message_id)
                case RoomsSet(rooms):
                    store.set_rooms(list(rooms))
                case CursorForgotten(room):
                    store.forget_cursor(room)
                case CursorSet(room, epoch, last_event_id):
                    store.set_cursor(room, epoch, last_event_id)

    def delivered(self, item: Delivered) -> None:
        """The handlers have had ``item``: a logged event's room cursor may move on."""
        if (
            isinstance(item, Event)
            and item.room in self._session.rooms
            and item.event_id is not None
        ):
            self.store.set_cursor(item.room, item.epoch, item.event_id)
