"""A store that keeps everything in the process: for tests and for bots that need no disk.

It goes through the same buffer and committer as :class:`~.sqlite.SqliteStore`, so
the ordering, coalescing and flush semantics are the same; "durable" here means
"survives ``close`` and a later ``open`` of the same object", nothing more.
"""

from __future__ import annotations

from .base import Cursor, StoredState
from .buffered import Batch, BufferedStore, Row, row_to_message

__all__ = ["MemoryStore"]


class MemoryStore(BufferedStore):
    """An in-process :class:`~.base.Store`; reopen the same object to get its contents back."""

    def __init__(self, *, max_batch: int = 1024, max_delay: float = 0.005) -> None:
        super().__init__(max_batch=max_batch, max_delay=max_delay)
        self._rows: dict[int, Row] = {}  # by seq, in seq order
        self._saved_rooms: list[str] = []
        self._saved_cursors: dict[str, Cursor] = {}
        self.commits = 0
        """Transactions written so far (for tests of group commit and cancel-out)."""

    async def _load(self) -> tuple[StoredState, list[int]]:
        state = StoredState(
            list(self._saved_rooms),
            dict(self._saved_cursors),
            [row_to_message(row) for row in self._rows.values()],
        )
        return state, list(self._rows)

    async def _write(self, batch: Batch) -> None:
        for seq in batch.deletes:
            del self._rows[seq]
        for row in batch.inserts:
            self._rows[row[0]] = row
        for room, cursor in batch.cursors.items():
            if cursor is None:
                self._saved_cursors.pop(room, None)
            else:
                self._saved_cursors[room] = cursor
        if batch.rooms is not None:
            self._saved_rooms = list(batch.rooms)
        self.commits += 1

    async def _release(self) -> None:
        pass
