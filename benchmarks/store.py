"""Enqueue throughput of SqliteStore against MemoryStore: ``python -m benchmarks.store``.

Both stores run the same buffer and group committer, so the ratio is the cost of
the disk. Workloads, each on a fresh store:

- ``durable``: ``--tasks`` tasks call ``enqueue_durable`` one message after another
  (a bot's senders waiting for durability), all at once;
- ``enqueue+flush``: one task enqueues ``--burst`` messages, then flushes, repeated;
- ``durable+ack``: as ``durable``, and each message is removed once durable (acked).

The messages look like the seed's ``chat:send``: a UUIDv7 id, a room, ~100 characters
of text. The directory's file system is printed: tmpfs makes fsync free.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from rtclient.ids import new_message_id
from rtclient.store import MemoryStore, SqliteStore, Store, StoredMessage

from .context import Context
from .results import Row, StoreDetails

Workload = Callable[[Store, list[StoredMessage], argparse.Namespace], Awaitable[None]]
TEXT = "On my way to the deploy review; the staging rollout looked fine, numbers in 10 min."


def make_messages(count: int) -> list[StoredMessage]:
    now = time.time()
    return [
        StoredMessage(
            new_message_id(),
            "chat:send",
            "general",
            {"roomId": "general", "text": f"{TEXT} #{i}"},
            200,
            now,
            now + 3600.0,
        )
        for i in range(count)
    ]


async def durable(store: Store, messages: list[StoredMessage], args: argparse.Namespace) -> None:
    async def sender(part: list[StoredMessage]) -> None:
        for message in part:
            await store.enqueue_durable(message)

    async with asyncio.TaskGroup() as group:
        for t in range(args.tasks):
            group.create_task(sender(messages[t :: args.tasks]))


async def durable_ack(
    store: Store, messages: list[StoredMessage], args: argparse.Namespace
) -> None:
    async def sender(part: list[StoredMessage]) -> None:
        for message in part:
            await store.enqueue_durable(message)
            store.remove(message.message_id)

    async with asyncio.TaskGroup() as group:
        for t in range(args.tasks):
            group.create_task(sender(messages[t :: args.tasks]))
    await store.flush()


async def enqueue_flush(
    store: Store, messages: list[StoredMessage], args: argparse.Namespace
) -> None:
    for start in range(0, len(messages), args.burst):
        for message in messages[start : start + args.burst]:
            store.enqueue(message)
        await store.flush()


WORKLOADS: dict[str, Workload] = {
    "durable": durable,
    "enqueue+flush": enqueue_flush,
    "durable+ack": durable_ack,
}


async def measure(make: Callable[[], Store], workload: Workload, args: argparse.Namespace) -> float:
    """Best messages/s over ``--repeat`` runs, each on a fresh store."""
    best = 0.0
    for _ in range(args.repeat):
        messages = make_messages(args.messages)
        store = make()
        await store.open()
        try:
            start = time.perf_counter()
            await workload(store, messages, args)
            elapsed = time.perf_counter() - start
        finally:
            await store.close()
        best = max(best, len(messages) / elapsed)
    return best


def file_system(path: Path) -> str:
    """The type of the file system holding ``path`` (Linux), else "?"."""
    best, kind = "", "?"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    target = str(path.resolve())
    for line in mounts:
        fields = line.split()
        if len(fields) > 2 and target.startswith(fields[1]) and len(fields[1]) > len(best):
            best, kind = fields[1], fields[2]
    return kind


async def run(args: argparse.Namespace, base: Path) -> None:
    print(
        f"{args.messages} messages, {args.tasks} tasks, burst {args.burst}, best of "
        f"{args.repeat}; {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{base} on {file_system(base)}"
    )
    counter = 0

    def sqlite(sync: str) -> Callable[[], Store]:
        def make() -> Store:
            nonlocal counter
            counter += 1
            return SqliteStore(base / f"{counter}.db", synchronous=sync)  # type: ignore[arg-type]

        return make

    stores: dict[str, Callable[[], Store]] = {"memory": MemoryStore}
    for sync in args.synchronous:
        stores[f"sqlite/{sync}"] = sqlite(sync)
    print(f"{'workload':<15}" + "".join(f"{name:>16}" for name in stores) + "   sqlite slowdown")
    for name, workload in WORKLOADS.items():
        rates = {store: await measure(make, workload, args) for store, make in stores.items()}
        ratios = ", ".join(
            f"{rates['memory'] / rate:.2f}x" for store, rate in rates.items() if store != "memory"
        )
        print(
            f"{name:<15}"
            + "".join(f"{rate:>12,.0f} m/s" for rate in rates.values())
            + f"   {ratios}"
        )


async def case(ctx: Context) -> None:
    """The suite's ``store`` case: every workload, SqliteStore (normal) vs MemoryStore."""
    n = ctx.sizes.store_messages
    ctx.say(f"store: {n} durable enqueues, SqliteStore vs MemoryStore")
    args = argparse.Namespace(messages=n, tasks=100, burst=1000, repeat=1)
    with tempfile.TemporaryDirectory(prefix="rtclient-bench-") as tmp:
        base = Path(tmp)
        fs = file_system(base)
        counter = iter(range(10**6))

        def sqlite(sync: str) -> Callable[[], Store]:
            return lambda: SqliteStore(
                base / f"{next(counter)}.db",
                synchronous=sync,  # type: ignore[arg-type]
            )

        rates: dict[str, dict[str, float]] = {}
        for name, workload in WORKLOADS.items():
            rates[name] = {
                "memory": await measure(MemoryStore, workload, args),
                "sqlite/normal": await measure(sqlite("normal"), workload, args),
            }
    ctx.results.details.store = StoreDetails(rates, fs)
    durable = rates["durable"]
    ctx.row(
        Row(
            "store: durable enqueue (100 tasks)",
            f"SqliteStore {durable['sqlite/normal']:,.0f} msg/s",
            f"MemoryStore {durable['memory']:,.0f} msg/s",
            durable["sqlite/normal"] / durable["memory"],
            note=f"synchronous=normal, {fs}; python -m benchmarks.store for more",
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where the SQLite files go")
    parser.add_argument(
        "--synchronous", nargs="+", default=["full", "normal"], choices=["full", "normal"]
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rtclient-bench-", dir=args.dir) as base:
        asyncio.run(run(args, Path(base)))


if __name__ == "__main__":
    main()
