"""SIGKILL a process that writes to a SqliteStore at random points; nothing durable is lost.

The worker (store_crash_worker.py) prints a line only after the store reported the
change durable. The parent kills it after a seeded random number of lines, reopens
the store (which also proves the kernel dropped the dead process's lock) and checks
that every reported change is there, nothing is doubled and the file is intact.
Successive runs share one file, so each run also starts from a crash-recovered store.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

from rtclient.store import SqliteStore, StoredState

WORKER = Path(__file__).with_name("store_crash_worker.py")
ROOT = Path(__file__).resolve().parents[2]


def run_and_kill(path: Path, mode: str, prefix: str, sync: str, kill_after: int) -> list[str]:
    """Start the worker, SIGKILL it after ``kill_after`` progress lines; return all lines.

    Lines still in the pipe after the kill were printed before it, so they count.
    ``kill_after == 0`` kills it as soon as it starts opening the store.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(path), mode, prefix, sync],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[str] = []
    progress = 0
    target = "opening" if kill_after == 0 else None
    while True:
        line = proc.stdout.readline()
        if not line:
            break  # the worker died on its own: reported below
        lines.append(line)
        progress += line[0] in "+c"
        if line.strip() == target or (target is None and progress >= kill_after):
            break
    proc.send_signal(signal.SIGKILL)
    # Not communicate(): it reads the raw pipe and would skip what readline buffered.
    with proc.stdout, proc.stderr:
        lines.extend(proc.stdout.readlines())
        errors = proc.stderr.read()
    assert proc.wait(timeout=30) == -signal.SIGKILL, f"worker died by itself:\n{errors}"
    # A line cut by the kill was not reported as a whole: only complete lines count.
    return [line.rstrip("\n") for line in lines if line.endswith("\n")]


async def reopen(path: Path) -> StoredState:
    store = SqliteStore(path)
    state = await store.open()
    await store.close()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    return state


def test_sigkill_never_loses_a_durable_message(tmp_path: Path) -> None:
    rng = random.Random(20240611)
    path = tmp_path / "bot.db"
    added: set[str] = set()
    removed: set[str] = set()
    removing: set[str] = set()  # removal under way at the kill: either outcome is right
    for run in range(10):
        prefix = f"run{run:02d}"
        kill_after = (
            0 if run == 0 else rng.choice([1, 2, rng.randint(3, 400), rng.randint(1, 3000)])
        )
        sync = ("full", "normal")[run % 2]
        lines = run_and_kill(path, "outbox", prefix, sync, kill_after)
        added.update(line[1:] for line in lines if line.startswith("+"))
        removed.update(line[1:] for line in lines if line.startswith("-"))
        removing.update(line[1:] for line in lines if line.startswith("~"))

        state = asyncio.run(reopen(path))
        ids = [m.message_id for m in state.outbox]
        assert len(ids) == len(set(ids)), "a message is stored twice"
        lost = added - removing - set(ids)
        assert not lost, f"run {run}: durable messages lost: {sorted(lost)[:5]}"
        assert not removed & set(ids), f"run {run}: durable removals undone"
        assert ids == sorted(ids), "enqueue order not kept"
        if any(line.startswith("+") for line in lines):
            assert state.rooms == ["lobby", prefix]
    assert len(added) > 500  # the kills did land in the middle of real work


def test_sigkill_during_heavy_cursor_updates(tmp_path: Path) -> None:
    rng = random.Random(7)
    path = tmp_path / "bot.db"
    for run in range(5):
        sync = ("full", "normal")[run % 2]
        lines = run_and_kill(path, "cursors", f"run{run}", sync, rng.randint(1, 400))
        reported = [int(line[1:]) for line in lines if line.startswith("c")]
        state = asyncio.run(reopen(path))
        if not reported:
            continue
        last = reported[-1]
        for room in range(10):
            floor = max(m for m in range(max(1, last - 9), last + 1) if m % 10 == room)
            cursor = state.cursors[f"room{room}"]
            assert cursor.epoch == "epoch"
            assert cursor.last_event_id is not None
            assert cursor.last_event_id >= floor, f"run {run}: room{room} went back"
            assert cursor.last_event_id % 10 == room
