"""Quickstart: two bots chat through a server restart and lose nothing.

Run: ``python examples/quickstart.py`` (starts its own FakeServer in-process and
restarts it mid-way), or against ``rtclient serve`` (no restart: stop and start serve
yourself while it runs, if you like)::

    python examples/quickstart.py ws://127.0.0.1:8765/ws \
        "$(rtclient token --user alice)" "$(rtclient token --user bob)"
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from fake_server import FakeServer
from rtclient import Backoff, Client, ConnectionState, Event

FAST = Backoff(base=0.05, cap=1.0, stable_after=1.0)


async def chat(url: str, token_a: str, token_b: str, server: FakeServer | None) -> int:
    received: list[Event] = []
    expected = 3 if server is not None else 2
    all_in = asyncio.Event()

    def on_message(event: Event) -> None:
        received.append(event)
        if len(received) == expected:
            all_in.set()

    async with (
        Client(url, token=token_a, backoff=FAST) as alice,
        Client(url, token=token_b, backoff=FAST) as bob,
    ):
        await alice.join("lobby")
        await bob.join("lobby")
        bob.on("chat:message", on_message)

        ack = await alice.send("lobby", "hello before the restart")
        print(f"alice sent event #{ack.event_id} (message id {ack.message_id})")

        if server is not None:
            # The server goes away for half a second: both clients notice, queue, and
            # come back on their own; bob's missed message is replayed from the log.
            restart = asyncio.create_task(server.restart(downtime=0.5))
            await alice.wait_for(ConnectionState.RECONNECTING)
            pending = asyncio.create_task(alice.send("lobby", "sent while the server was down"))
            await restart
            print(f"queued message delivered as event #{(await pending).event_id}")

        await alice.send("lobby", "hello after the restart" if server else "hello again")
        async with asyncio.timeout(10):
            await all_in.wait()
        for event in received:
            origin = "replayed" if event.replayed else "live"
            print(f"bob got #{event.event_id} from {event.sender} ({origin}): {event.text}")
        print("alice stats:", {k: v for k, v in alice.stats().items() if v})
    return 0


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description="Two bots chat through a server restart and lose nothing."
    )
    parser.add_argument("url", nargs="?", help="a running server (default: an in-process one)")
    parser.add_argument("token_a", nargs="?", help="alice's token (with URL)")
    parser.add_argument("token_b", nargs="?", help="bob's token (with URL)")
    args = parser.parse_args(argv)
    if args.url is not None:
        if args.token_b is None:
            parser.error("with a URL, give both tokens")
        return await chat(args.url, args.token_a, args.token_b, None)
    async with FakeServer() as server:
        return await chat(
            server.ws_url, server.issue_token("alice"), server.issue_token("bob"), server
        )


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
