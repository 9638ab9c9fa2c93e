"""Durable outbox, rooms and cursors, so that a bot's own restart loses nothing.

:class:`Store` is the contract; :class:`SqliteStore` keeps it in an SQLite file,
:class:`MemoryStore` in the process (tests, or bots that need no disk). Typical use::

    store = SqliteStore("bot.db")
    state = await store.open()          # rooms, cursors, outbox as left last time
    ...
    await store.enqueue_durable(StoredMessage.from_entry(entry, clock_offset=offset))
    store.set_cursor(room, epoch, last_event_id)   # buffered, coalesced
    store.remove(message_id)                        # on ack
    ...
    await store.close()
"""

from .base import (
    Cursor,
    Store,
    StoreCorrupt,
    StoredMessage,
    StoredState,
    StoreError,
    StoreLocked,
    StoreVersionError,
    clock_offset,
)
from .memory import MemoryStore
from .sqlite import SCHEMA_VERSION, SqliteStore

__all__ = [
    "SCHEMA_VERSION",
    "Cursor",
    "MemoryStore",
    "SqliteStore",
    "Store",
    "StoreCorrupt",
    "StoreError",
    "StoreLocked",
    "StoreVersionError",
    "StoredMessage",
    "StoredState",
    "clock_offset",
]
