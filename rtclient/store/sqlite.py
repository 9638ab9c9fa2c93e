"""A store in one SQLite file (WAL mode), guarded by a lock file, written by one thread.

Durability of a returned :meth:`~.base.Store.flush` / ``enqueue_durable``:

- ``synchronous="full"`` (the default): every commit fsyncs the write-ahead log
  before ``flush`` returns, so the change survives a process kill *and* an OS crash
  or power loss (as far as the disk honours fsync).
- ``synchronous="normal"``: the commit is in the log but not fsynced; it survives a
  process kill (SIGKILL, OOM killer, crash: the kernel still writes the page
  cache) but an OS crash or power loss may lose the last commits.

In both modes a kill at any moment leaves a consistent database: SQLite's commit is
atomic and WAL recovery drops a torn tail, so the store holds a prefix of the
committed batches, never half of one.

Every blocking call (open, check, migrate, commit, close) runs on one thread owned
by the store, not in ``asyncio.to_thread``: an SQLite connection wants one thread,
one writer serialises the commits without a lock, and the application's default
executor can neither starve nor be starved by the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, TypeVar

from .base import Cursor, StoreCorrupt, StoredState, StoreError, StoreLocked, StoreVersionError
from .buffered import Batch, BufferedStore, Row, row_to_message

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "SqliteStore"]

T = TypeVar("T")
Synchronous = Literal["full", "normal"]

APPLICATION_ID = 0x72744331  # "rtC1" in the file header: this file is an rtclient store
SCHEMA_VERSION = 1

_INSERT = "INSERT INTO outbox VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
_SELECT = (
    "SELECT seq, message_id, kind, room, payload, size, enqueued_at, expires_at, attempts"
    " FROM outbox ORDER BY seq"
)


def _create_v1(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY,        -- enqueue order
            message_id TEXT NOT NULL,       -- unique: the store refuses duplicates
            kind TEXT NOT NULL,
            room TEXT NOT NULL,
            payload TEXT NOT NULL,          -- JSON
            size INTEGER NOT NULL,
            enqueued_at REAL NOT NULL,      -- wall clock, Unix epoch seconds
            expires_at REAL,                -- wall clock; NULL: no TTL
            attempts INTEGER NOT NULL
        )"""
    )
    conn.execute("CREATE TABLE rooms (position INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)")
    conn.execute(
        "CREATE TABLE cursors (room TEXT PRIMARY KEY, epoch TEXT, last_event_id INTEGER)"
        " WITHOUT ROWID"
    )
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")


# _MIGRATIONS[n] takes a store from schema version n to n + 1 (version 0: an empty
# file). A v2 appends its step here and bumps SCHEMA_VERSION; each step runs in its
# own transaction together with the new user_version.
_MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_create_v1,)
assert len(_MIGRATIONS) == SCHEMA_VERSION


class SqliteStore(BufferedStore):
    """A :class:`~.base.Store` in the SQLite file at ``path``; see the module doc.

    ``path + ".lock"`` is held with ``flock`` while the store is open: a second
    store on the same file, in this process or another, gets :class:`StoreLocked`.
    The kernel drops the lock when the process dies, so a crash never leaves it held.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "full",
        max_batch: int = 1024,
        max_delay: float = 0.005,
    ) -> None:
        super().__init__(max_batch=max_batch, max_delay=max_delay)
        if synchronous not in ("full", "normal"):
            raise ValueError(f"synchronous must be 'full' or 'normal', not {synchronous!r}")
        self.path = os.fspath(path)
        if self.path == ":memory:" or not self.path:
            raise ValueError("SqliteStore needs a file path; use MemoryStore for memory")
        self.lock_path = self.path + ".lock"
        self.synchronous: Synchronous = synchronous
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._lock_fd: int | None = None

    # -- BufferedStore ------------------------------------------------------------------

    async def _load(self) -> tuple[StoredState, list[int]]:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="rtclient-store")
        try:
            return await self._call(self._open_sync)
        except BaseException:
            # Cancelled mid-open, the thread may still finish opening: undo after it.
            self._executor.submit(self._release_sync)
            self._shutdown_executor()
            raise

    async def _write(self, batch: Batch) -> None:
        await self._call(self._write_sync, batch)

    async def _release(self) -> None:
        try:
            await self._call(self._release_sync)
        finally:
            self._shutdown_executor()

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        assert self._executor is not None
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _shutdown_executor(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            # Joins a thread with nothing left to do (its last job has returned), so
            # close() leaves no thread behind.
            executor.shutdown(wait=True)

    # -- on the store's thread ------------------------------------------------------------

    def _open_sync(self) -> tuple[StoredState, list[int]]:
        lock_fd = _lock(self.lock_path)
        conn: sqlite3.Connection | None = None
        try:
            with _mapped(self.path):
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                created = _prepare(conn, self.path, self.synchronous)
                loaded = _read_state(conn, self.path)
            if created and self.synchronous == "full":
                _fsync_directory(self.path)
        except BaseException:
            if conn is not None:
                conn.close()
            os.close(lock_fd)
            raise
        self._conn, self._lock_fd = conn, lock_fd
        return loaded

    def _write_sync(self, batch: Batch) -> None:
        conn = self._conn
        assert conn is not None
        with _mapped(self.path):
            conn.execute("BEGIN")
            try:
                if batch.deletes:
                    conn.executemany(
                        "DELETE FROM outbox WHERE seq = ?", [(seq,) for seq in batch.deletes]
                    )
                if batch.inserts:
                    conn.executemany(_INSERT, batch.inserts)
                _write_cursors(conn, batch.cursors)
                if batch.rooms is not None:
                    conn.execute("DELETE FROM rooms")
                    conn.executemany("INSERT INTO rooms VALUES (?, ?)", enumerate(batch.rooms))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise

    def _release_sync(self) -> None:
        conn, self._conn = self._conn, None
        lock_fd, self._lock_fd = self._lock_fd, None
        try:
            if conn is not None:
                with _mapped(self.path):
                    conn.close()  # the last connection checkpoints and removes the WAL
        finally:
            if lock_fd is not None:
                os.close(lock_fd)  # closing the descriptor releases the flock


def _lock(lock_path: str) -> int:
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StoreError(f"cannot open the lock file {lock_path}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise StoreLocked(
            f"{lock_path} is held by another open store (pid {holder or '?'});"
            " one store per client identity"
        ) from None
    except OSError as exc:
        os.close(fd)
        raise StoreError(f"cannot lock {lock_path}: {exc.strerror}") from exc
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


@contextlib.contextmanager
def _mapped(path: str) -> Iterator[None]:
    """Turn sqlite3's exceptions into StoreError (StoreCorrupt for a damaged file)."""
    try:
        yield
    except sqlite3.Error as exc:
        code = getattr(exc, "sqlite_errorname", "")
        if code in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
            raise StoreCorrupt(f"{path} is not an SQLite database or is damaged: {exc}") from exc
        raise StoreError(f"{path}: {exc}") from exc


def _prepare(conn: sqlite3.Connection, path: str, synchronous: Synchronous) -> bool:
    """Check the header, switch to WAL, migrate; True if the store was just created."""
    app_id: int = conn.execute("PRAGMA application_id").fetchone()[0]
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    empty = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
    if not (empty and app_id == 0 and version == 0):
        if app_id != APPLICATION_ID:
            raise StoreCorrupt(f"{path} is an SQLite database but not an rtclient store")
        if version < 1:
            raise StoreCorrupt(f"{path} is an rtclient store without a schema version")
        if version > SCHEMA_VERSION:
            raise StoreVersionError(path, version, SCHEMA_VERSION)
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode != "wal":
        raise StoreError(f"{path}: cannot switch to WAL mode (got {mode!r})")
    conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    check = [row[0] for row in conn.execute("PRAGMA quick_check")]
    if check != ["ok"]:
        raise StoreCorrupt(f"{path} fails its integrity check: {'; '.join(check[:3])}")
    for step in range(version, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            _MIGRATIONS[step](conn)
            conn.execute(f"PRAGMA user_version = {step + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return version == 0


def _read_state(conn: sqlite3.Connection, path: str) -> tuple[StoredState, list[int]]:
    rows: list[Row] = conn.execute(_SELECT).fetchall()
    try:
        outbox = [row_to_message(row) for row in rows]
    except ValueError as exc:
        raise StoreCorrupt(f"{path}: an outbox payload is not valid JSON") from exc
    if len({m.message_id for m in outbox}) != len(outbox):
        raise StoreCorrupt(f"{path}: a message id is in the outbox twice")
    rooms = [name for (name,) in conn.execute("SELECT name FROM rooms ORDER BY position")]
    cursors = {
        room: Cursor(epoch, last_event_id)
        for room, epoch, last_event_id in conn.execute("SELECT * FROM cursors")
    }
    return StoredState(rooms, cursors, outbox), [row[0] for row in rows]


def _write_cursors(conn: sqlite3.Connection, cursors: dict[str, Cursor | None]) -> None:
    gone = [(room,) for room, cursor in cursors.items() if cursor is None]
    if gone:
        conn.executemany("DELETE FROM cursors WHERE room = ?", gone)
    upserts = [(r, c.epoch, c.last_event_id) for r, c in cursors.items() if c is not None]
    if upserts:
        conn.executemany("INSERT OR REPLACE INTO cursors VALUES (?, ?, ?)", upserts)


def _fsync_directory(path: str) -> None:
    """Make the new file's directory entry durable too (power loss right after creation)."""
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
