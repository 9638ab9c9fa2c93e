"""A bot process for the store kill test: queue messages durably, or drain the store.

``python store_bot.py URL STORE queue N ROOM``: join ROOM, queue N messages (printing
each id once ``enqueue`` returned, i.e. once it is durable), then wait to be killed.
``python store_bot.py URL STORE drain``: reconnect from the store, deliver, exit 0.
The token comes from the RT_TOKEN environment variable.
"""

from __future__ import annotations

import asyncio
import os
import sys

from rtclient import Backoff, Client, ConnectionState
from rtclient.testing import wait_until


async def main(url: str, store: str, mode: str, *rest: str) -> int:
    client = Client(
        url,
        token=os.environ["RT_TOKEN"],
        store=store,
        backoff=Backoff(base=0.01, cap=0.1),
        ack_timeout=1.0,
    )
    await client.connect(wait=False)
    if mode == "queue":
        count, room = int(rest[0]), rest[1]
        join = asyncio.create_task(client.join(room))
        # join() registers the room at once (it is remembered offline).
        await wait_until(lambda: room in client.rooms)
        for i in range(count):
            message_id = await client.enqueue(room, f"msg-{i}")
            print(message_id, flush=True)
        print("done", flush=True)
        await join  # never returns while the server refuses us: the parent kills us
        return 0
    await client.wait_for(ConnectionState.CONNECTED)
    await client.close(flush=True, timeout=15)
    return 0 if client.stats()["queued"] == 0 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(*sys.argv[1:])))
