"""Unit tests for rtclient.store: round trips, buffering, group commit, errors, locking."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtclient.outbox import OutboxEntry
from rtclient.store import (
    SCHEMA_VERSION,
    Cursor,
    MemoryStore,
    SqliteStore,
    Store,
    StoreCorrupt,
    StoredMessage,
    StoreError,
    StoreLocked,
    StoreVersionError,
)
from rtclient.store import sqlite as sqlite_module
from rtclient.store.buffered import Batch, BufferedStore, _Phase
from rtclient.testing import wait_until


def msg(message_id: str, **kw: Any) -> StoredMessage:
    fields: dict[str, Any] = {
        "kind": "chat:send",
        "room": "lobby",
        "payload": {"roomId": "lobby", "text": f"hello {message_id} ✓"},
        "size": 120,
        "enqueued_at": 1_700_000_000.25,
        "expires_at": None,
        "attempts": 0,
    }
    fields.update(kw)
    return StoredMessage(message_id, **fields)


def raw(path: Path) -> contextlib.closing[sqlite3.Connection]:
    """A plain connection to look at (or tamper with) the file behind the store."""
    return contextlib.closing(sqlite3.connect(path, isolation_level=None))


def wal_exists(path: Path) -> bool:
    return Path(f"{path}-wal").exists()


def store_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("rtclient-store")]


class Target:
    """One client identity: ``make()`` gives the store to open (again) for it."""

    def __init__(self, kind: str, path: Path) -> None:
        self.kind = kind
        self.path = path
        self.memory: MemoryStore | None = None
        self.made: list[BufferedStore] = []

    def make(self, **kw: Any) -> BufferedStore:
        store: BufferedStore
        if self.kind == "memory":
            if self.memory is None:
                self.memory = MemoryStore(**kw)
            store = self.memory
        else:
            store = SqliteStore(self.path, **kw)
        self.made.append(store)
        return store

    async def close_all(self) -> None:
        for store in self.made:
            with contextlib.suppress(StoreError):
                await store.close()


@pytest.fixture(params=["memory", "sqlite"])
async def target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Target]:
    t = Target(request.param, tmp_path / "bot.db")
    yield t
    await t.close_all()


@pytest.fixture
async def sqlite_target(tmp_path: Path) -> AsyncIterator[Target]:
    t = Target("sqlite", tmp_path / "bot.db")
    yield t
    await t.close_all()


def spy(store: BufferedStore) -> list[Batch]:
    """Record every batch the store writes."""
    batches: list[Batch] = []
    write = store._write

    async def recording(batch: Batch) -> None:
        batches.append(batch)
        await write(batch)

    store._write = recording  # type: ignore[method-assign]
    return batches


# -- round trips -------------------------------------------------------------------------


async def test_round_trip_keeps_order_and_fields(target: Target) -> None:
    store = target.make()
    assert (await store.open()).outbox == []
    store.set_rooms(["b", "a", "c"])
    store.set_cursor("a", "epoch-1", 41)
    store.set_cursor("b", None, None)
    store.set_cursor("user:ann", "e", 7)
    messages = [
        msg("m3", expires_at=1_700_000_060.5, attempts=2),
        msg("m1", room="user:ann", kind="dm:send", payload={"toUserId": "ann", "x": [1, None]}),
        msg("m2", enqueued_at=1_700_000_001.0),
    ]
    for message in messages[:2]:
        await store.enqueue_durable(message)
    store.enqueue(messages[2])
    await store.close()  # close commits what is buffered

    store = target.make()
    state = await store.open()
    assert state.outbox == messages
    assert state.rooms == ["b", "a", "c"]
    assert state.cursors == {
        "a": Cursor("epoch-1", 41),
        "b": Cursor(None, None),
        "user:ann": Cursor("e", 7),
    }
    store.remove("m3")
    store.set_rooms(["c", "b"])
    store.forget_cursor("a")
    store.enqueue(msg("m4"))
    await store.close()

    state = await target.make().open()
    assert [m.message_id for m in state.outbox] == ["m1", "m2", "m4"]
    assert state.rooms == ["c", "b"]
    assert set(state.cursors) == {"b", "user:ann"}


async def test_reenqueue_after_remove_goes_to_the_end(target: Target) -> None:
    store = target.make()
    await store.open()
    for name in ("a", "b", "c"):
        store.enqueue(msg(name))
    await store.flush()
    store.remove("a")
    store.enqueue(msg("a", attempts=5))
    await store.close()
    state = await target.make().open()
    assert [(m.message_id, m.attempts) for m in state.outbox] == [("b", 0), ("c", 0), ("a", 5)]


async def test_payload_is_captured_at_enqueue(target: Target) -> None:
    store = target.make()
    await store.open()
    payload: dict[str, Any] = {"text": "before"}
    store.enqueue(msg("m", payload=payload))
    payload["text"] = "after"
    await store.close()
    assert (await target.make().open()).outbox[0].payload == {"text": "before"}


def test_entry_conversion_keeps_wall_clock_across_processes() -> None:
    entry = OutboxEntry("m", "chat:send", "r", {"t": 1}, 50, enqueued_at=100.0, expires_at=130.0)
    stored = StoredMessage.from_entry(entry, clock_offset=1_700_000_000.0)
    assert (stored.enqueued_at, stored.expires_at) == (1_700_000_100.0, 1_700_000_130.0)
    # The next process has its own monotonic clock: 5 s of it already passed.
    back = stored.to_entry(clock_offset=1_700_000_095.0)
    assert (back.enqueued_at, back.expires_at, back.attempts) == (5.0, 35.0, 1)
    assert stored.to_entry(clock_offset=0.0, assume_sent=False).attempts == 0
    assert StoredMessage.from_entry(
        OutboxEntry("n", "k", "r", {}, 1, 1.0), clock_offset=2.0
    ) == StoredMessage("n", "k", "r", {}, 1, 3.0, None, 0)


# -- the buffer ----------------------------------------------------------------------------


async def test_remove_before_commit_writes_nothing(target: Target) -> None:
    store = target.make(max_delay=3600.0)
    await store.open()
    batches = spy(store)
    store.enqueue(msg("keep"))
    store.enqueue(msg("gone"))
    assert store.remove("gone") is True
    await store.flush()
    assert len(batches) == 1
    assert [row[1] for row in batches[0].inserts] == ["keep"]
    assert batches[0].deletes == []
    store.enqueue(msg("gone2"))
    assert store.remove("gone2")
    await store.flush()  # everything cancelled out: no transaction at all
    assert len(batches) == 1
    if target.kind == "sqlite":
        with raw(target.path) as conn:
            assert conn.execute("SELECT message_id FROM outbox").fetchall() == [("keep",)]


async def test_remove_of_unknown_id_is_false_and_writes_nothing(target: Target) -> None:
    store = target.make()
    await store.open()
    batches = spy(store)
    assert store.remove("nope") is False
    await store.flush()
    assert batches == []


async def test_cursor_updates_are_coalesced(target: Target) -> None:
    store = target.make(max_delay=3600.0)
    await store.open()
    batches = spy(store)
    for event_id in range(1, 1001):
        store.set_cursor("a", "e1", event_id)
        store.set_cursor("b", "e1", event_id * 2)
    await store.flush()
    assert len(batches) == 1
    assert batches[0].cursors == {"a": Cursor("e1", 1000), "b": Cursor("e1", 2000)}
    store.set_cursor("a", "e1", 1000)  # unchanged: nothing to write
    store.set_rooms([])  # unchanged
    store.forget_cursor("never-set")
    await store.flush()
    assert len(batches) == 1
    store.forget_cursor("a")
    store.set_cursor("a", "e2", 1)
    await store.flush()
    assert batches[1].cursors == {"a": Cursor("e2", 1)}
    await store.close()
    assert (await target.make().open()).cursors == {"a": Cursor("e2", 1), "b": Cursor("e1", 2000)}


async def test_concurrent_durable_enqueues_share_commits(target: Target) -> None:
    store = target.make()
    await store.open()
    batches = spy(store)
    await asyncio.gather(*(store.enqueue_durable(msg(f"m{i:03}")) for i in range(200)))
    assert len(batches) <= 2  # one group commit (plus at most one straggler)
    assert [row[1] for b in batches for row in b.inserts] == [f"m{i:03}" for i in range(200)]


async def test_unflushed_changes_commit_after_max_delay(target: Target) -> None:
    store = target.make(max_delay=0.01)
    await store.open()
    committed = asyncio.Event()
    write = store._write

    async def signalling(batch: Batch) -> None:
        await write(batch)
        committed.set()

    store._write = signalling  # type: ignore[method-assign]
    store.enqueue(msg("m"))
    async with asyncio.timeout(5):
        await committed.wait()


async def test_max_batch_pending_starts_a_commit(target: Target) -> None:
    store = target.make(max_batch=10, max_delay=3600.0)
    await store.open()
    committed = asyncio.Event()
    write = store._write

    async def signalling(batch: Batch) -> None:
        await write(batch)
        committed.set()

    store._write = signalling  # type: ignore[method-assign]
    for i in range(10):
        store.enqueue(msg(f"m{i}"))
    async with asyncio.timeout(5):
        await committed.wait()


def gate_writes(store: BufferedStore) -> tuple[asyncio.Event, asyncio.Event]:
    """Hold every write until ``gate`` is set; ``started`` is set when one is held."""
    started, gate = asyncio.Event(), asyncio.Event()
    write = store._write

    async def gated(batch: Batch) -> None:
        started.set()
        await gate.wait()
        await write(batch)

    store._write = gated  # type: ignore[method-assign]
    return started, gate


async def test_flush_waits_for_the_commit_already_under_way(target: Target) -> None:
    store = target.make()
    await store.open()
    started, gate = gate_writes(store)
    first = asyncio.create_task(store.enqueue_durable(msg("a")))
    await started.wait()
    second = asyncio.create_task(store.flush())  # buffer empty, a commit under way
    cancelled = asyncio.create_task(store.flush())
    await asyncio.sleep(0)  # one turn: both reach their wait
    assert not second.done()
    cancelled.cancel()  # does not cancel the shared commit
    gate.set()
    await asyncio.gather(first, second)
    assert cancelled.cancelled()
    await store.close()
    assert [m.message_id for m in (await target.make().open()).outbox] == ["a"]


async def test_misuse_raises(target: Target) -> None:
    store = target.make()
    with pytest.raises(StoreError, match="closed"):
        store.enqueue(msg("m"))
    with pytest.raises(StoreError):
        await store.flush()
    await store.open()
    with pytest.raises(StoreError, match="open"):
        await store.open()
    store.enqueue(msg("m"))
    with pytest.raises(ValueError, match="already"):
        store.enqueue(msg("m"))
    with pytest.raises(TypeError):
        store.enqueue(msg("bad", payload={"x": object()}))
    with pytest.raises(ValueError, match="twice"):
        store.set_rooms(["a", "a"])
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreError):
        store.remove("m")
    state = await target.make().open()
    assert [m.message_id for m in state.outbox] == ["m"]


def test_invalid_construction(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        MemoryStore(max_batch=0)
    with pytest.raises(ValueError):
        MemoryStore(max_delay=0)
    with pytest.raises(ValueError):
        SqliteStore(":memory:")
    with pytest.raises(ValueError):
        SqliteStore(tmp_path / "x.db", synchronous="off")  # type: ignore[arg-type]


def test_both_implement_the_protocol(tmp_path: Path) -> None:
    assert isinstance(MemoryStore(), Store)
    assert isinstance(SqliteStore(tmp_path / "x.db"), Store)


# -- failures --------------------------------------------------------------------------------


async def test_a_failed_write_fails_the_store(sqlite_target: Target) -> None:
    store = sqlite_target.make()
    await store.open()
    await store.enqueue_durable(msg("ok"))
    with raw(sqlite_target.path) as conn:
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON outbox WHEN NEW.message_id = 'bad'"
            " BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    store.enqueue(msg("also"))
    waiters = [asyncio.create_task(store.enqueue_durable(msg("bad"))), store.flush()]
    for waiter in waiters:
        with pytest.raises(StoreError, match="refused") as info:
            await waiter
        assert isinstance(info.value.__cause__, sqlite3.Error)
    with pytest.raises(StoreError, match="refused"):
        store.enqueue(msg("later"))
    with pytest.raises(StoreError, match="refused"):
        await store.close()
    assert store_threads() == []
    state = await sqlite_target.make().open()  # the failed batch rolled back as a whole
    assert [m.message_id for m in state.outbox] == ["ok"]


async def test_memory_write_failure_is_a_store_error() -> None:
    class Broken(MemoryStore):
        async def _write(self, batch: Batch) -> None:
            raise OSError("disk on fire")

    store = Broken()
    await store.open()
    with pytest.raises(StoreError, match="disk on fire"):
        await store.enqueue_durable(msg("m"))
    with pytest.raises(StoreError):
        await store.close()


async def test_newer_schema_version_is_refused(sqlite_target: Target) -> None:
    store = sqlite_target.make()
    await store.open()
    await store.close()
    with raw(sqlite_target.path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreVersionError) as info:
        await sqlite_target.make().open()
    assert (info.value.found, info.value.supported) == (SCHEMA_VERSION + 1, SCHEMA_VERSION)
    assert store_threads() == []
    with raw(sqlite_target.path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    await sqlite_target.make().open()  # the failed open released the lock


async def test_older_version_is_migrated(
    sqlite_target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = sqlite_target.make()
    await store.open()
    await store.enqueue_durable(msg("m"))
    await store.close()

    def to_v2(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE outbox ADD COLUMN note TEXT")

    def broken_v2(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE outbox ADD COLUMN note TEXT")
        conn.execute("SELECT no_such_function()")

    monkeypatch.setattr(sqlite_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setattr(sqlite_module, "_MIGRATIONS", (*sqlite_module._MIGRATIONS, broken_v2))
    with pytest.raises(StoreError, match="no_such_function"):
        await sqlite_target.make().open()
    with raw(sqlite_target.path) as conn:  # the failed step rolled back as a whole
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert "note" not in [row[1] for row in conn.execute("PRAGMA table_info(outbox)")]

    monkeypatch.setattr(sqlite_module, "_MIGRATIONS", (*sqlite_module._MIGRATIONS[:-1], to_v2))
    store = sqlite_target.make()
    state = await store.open()
    await store.close()
    assert [m.message_id for m in state.outbox] == ["m"]
    with raw(sqlite_target.path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
        assert "note" in [row[1] for row in conn.execute("PRAGMA table_info(outbox)")]


@pytest.mark.parametrize(
    "content",
    [b"this is not a database at all\n" * 200, b"garbage", b"SQLite format 3\x00" + b"\xff" * 200],
)
async def test_garbage_file_is_a_store_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bot.db"
    path.write_bytes(content)
    with pytest.raises(StoreCorrupt) as info:
        await SqliteStore(path).open()
    assert isinstance(info.value, StoreError)
    assert store_threads() == []
    path.unlink()
    store = SqliteStore(path)  # lock released: a good file at the same path opens
    await store.open()
    await store.close()


async def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with raw(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(StoreCorrupt, match="not an rtclient store"):
        await SqliteStore(path).open()


async def test_damaged_contents_are_store_corrupt(sqlite_target: Target) -> None:
    store = sqlite_target.make()
    await store.open()
    await store.enqueue_durable(msg("m"))
    await store.close()
    with raw(sqlite_target.path) as conn:
        conn.execute(
            "INSERT INTO outbox SELECT seq + 1, message_id, kind, room, payload,"
            " size, enqueued_at, expires_at, attempts FROM outbox"
        )
    with pytest.raises(StoreCorrupt, match="twice"):
        await sqlite_target.make().open()
    with raw(sqlite_target.path) as conn:
        conn.execute("UPDATE outbox SET message_id = 'n', payload = '{oops' WHERE seq = 2")
    with pytest.raises(StoreCorrupt, match="JSON"):
        await sqlite_target.make().open()


async def test_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        await SqliteStore(tmp_path / "missing-dir" / "bot.db").open()
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreError):
        await SqliteStore(tmp_path / "dir.db").open()
    assert store_threads() == []


async def test_empty_file_becomes_a_fresh_store(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    path.touch()
    store = SqliteStore(path)
    assert (await store.open()).outbox == []
    await store.close()
    with raw(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# -- locking and clean-up ----------------------------------------------------------------------


async def test_second_store_on_the_same_path_is_locked_out(sqlite_target: Target) -> None:
    first = sqlite_target.make()
    await first.open()
    second = sqlite_target.make()
    with pytest.raises(StoreLocked, match="one store per client identity"):
        await second.open()
    # Another path spelling of the same file is the same lock.
    relative = SqliteStore(sqlite_target.path.parent / "." / sqlite_target.path.name)
    with pytest.raises(StoreLocked):
        await relative.open()
    await first.close()
    await second.open()
    await second.close()


async def test_another_process_is_locked_out(sqlite_target: Target) -> None:
    store = sqlite_target.make()
    await store.open()
    script = (
        "import asyncio, sys\n"
        "from rtclient.store import SqliteStore, StoreLocked\n"
        "try:\n"
        "    asyncio.run(SqliteStore(sys.argv[1]).open())\n"
        "except StoreLocked:\n"
        "    print('locked')\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        str(sqlite_target.path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert (proc.returncode, out.decode().strip()) == (0, "locked"), err.decode()


async def test_close_leaves_no_task_or_thread(target: Target) -> None:
    before = asyncio.all_tasks()
    store = target.make()
    await store.open()
    store.set_cursor("a", "e", 1)
    store.enqueue(msg("m"))
    await store.close()
    assert asyncio.all_tasks() == before
    assert store_threads() == []
    if target.kind == "sqlite":
        assert not wal_exists(target.path)  # checkpointed on close


async def test_close_fails_waiters_if_cancelled_mid_commit(target: Target) -> None:
    store = target.make()
    await store.open()
    started, _ = gate_writes(store)
    waiter = asyncio.create_task(store.enqueue_durable(msg("m")))
    await started.wait()
    closer = asyncio.create_task(store.close())
    # close() marks the store closing, then waits for the committer (no await between).
    await wait_until(lambda: store._phase is _Phase.CLOSING)
    closer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closer
    with pytest.raises(StoreError, match="closed while a commit"):
        await waiter
    assert store_threads() == []
    with pytest.raises(StoreError):
        store.enqueue(msg("n"))


# -- against a model -------------------------------------------------------------------------

IDS = st.sampled_from([f"m{i}" for i in range(8)])
ROOMS = st.sampled_from(["a", "b", "c", "user:z"])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("enqueue"), IDS, st.integers(0, 3)),
        st.tuples(st.just("remove"), IDS),
        st.tuples(st.just("cursor"), ROOMS, st.sampled_from(["e1", "e2", None]), st.integers(0, 9)),
        st.tuples(st.just("forget"), ROOMS),
        st.tuples(st.just("rooms"), st.lists(ROOMS, unique=True)),
        st.tuples(st.just("flush")),
        st.tuples(st.just("reopen")),
    ),
    max_size=40,
)


async def run_model(make: Any, ops: list[tuple[Any, ...]]) -> None:
    outbox: dict[str, StoredMessage] = {}
    cursors: dict[str, Cursor] = {}
    rooms: list[str] = []
    store = make()
    await store.open()
    try:
        for op in ops:
            if op[0] == "enqueue":
                message = msg(op[1], attempts=op[2], expires_at=float(op[2]) or None)
                if op[1] in outbox:
                    with pytest.raises(ValueError):
                        store.enqueue(message)
                else:
                    store.enqueue(message)
                    outbox[op[1]] = message
            elif op[0] == "remove":
                assert store.remove(op[1]) is (outbox.pop(op[1], None) is not None)
            elif op[0] == "cursor":
                store.set_cursor(op[1], op[2], op[3])
                cursors[op[1]] = Cursor(op[2], op[3])
            elif op[0] == "forget":
                store.forget_cursor(op[1])
                cursors.pop(op[1], None)
            elif op[0] == "rooms":
                store.set_rooms(op[1])
                rooms = list(op[1])
            elif op[0] == "flush":
                await store.flush()
            else:
                await store.close()
                store = make()
                state = await store.open()
                assert state.outbox == list(outbox.values())
                assert state.cursors == cursors
                assert state.rooms == rooms
    finally:
        await store.close()
    state = await store.open()
    await store.close()
    assert state.outbox == list(outbox.values())
    assert (state.cursors, state.rooms) == (cursors, rooms)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS)
def test_memory_store_matches_model(ops: list[tuple[Any, ...]]) -> None:
    store = MemoryStore(max_delay=3600.0)
    asyncio.run(run_model(lambda: store, ops))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, max_batch=st.sampled_from([1, 3, 1024]))
def test_sqlite_store_matches_model(ops: list[tuple[Any, ...]], max_batch: int) -> None:
    with tempdir() as directory:
        path = directory / "bot.db"
        asyncio.run(run_model(lambda: SqliteStore(path, max_batch=max_batch), ops))


@contextlib.contextmanager
def tempdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)
