"""Run by test_store_crash.py: write to a SqliteStore until SIGKILLed, reporting progress.

``python store_crash_worker.py PATH outbox PREFIX SYNC``: tasks enqueue messages
``PREFIX-000000``, ``PREFIX-000001``, … with ``enqueue_durable`` and print ``+ID``
after each returns; now and then one durable message is removed: ``~ID`` is
printed before the removal, ``-ID`` after the flush that covers it returned.

``python store_crash_worker.py PATH cursors PREFIX SYNC``: update the cursors of ten
rooms (room ``n % 10`` gets event id ``n``) as fast as possible, flush every 50
updates and print ``cN`` after the flush covering updates up to ``n = N`` returned.

Every line is printed (and flushed) only after the store said it was durable.
"""

from __future__ import annotations

import asyncio
import sys
import time

from rtclient.store import SqliteStore, StoredMessage

TASKS = 8


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def outbox(store: SqliteStore, prefix: str) -> None:
    counter = 0
    durable: list[str] = []

    async def sender() -> None:
        nonlocal counter
        while True:
            message_id = f"{prefix}-{counter:06d}"
            counter += 1
            payload = {"roomId": "lobby", "text": f"message {message_id}"}
            await store.enqueue_durable(
                StoredMessage(message_id, "chat:send", "lobby", payload, 100, time.time())
            )
            say(f"+{message_id}")
            durable.append(message_id)
            if counter % 7 == 0 and durable:
                acked = durable.pop(0)
                say(f"~{acked}")  # from here on it may be gone
                if store.remove(acked):
                    await store.flush()
                    say(f"-{acked}")

    async with asyncio.TaskGroup() as group:
        for _ in range(TASKS):
            group.create_task(sender())


async def cursors(store: SqliteStore) -> None:
    n = 0
    while True:
        n += 1
        store.set_cursor(f"room{n % 10}", "epoch", n)
        if n % 50 == 0:
            await store.flush()
            say(f"c{n}")


async def main(path: str, mode: str, prefix: str, sync: str) -> None:
    say("opening")
    store = SqliteStore(path, synchronous=sync)  # type: ignore[arg-type]
    await store.open()
    say("open")
    store.set_rooms(["lobby", prefix])
    if mode == "outbox":
        await outbox(store, prefix)
    else:
        await cursors(store)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
