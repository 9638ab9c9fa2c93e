"""A notification service: pushes direct messages into users' inboxes, none lost.

Every user has an inbox room, ``user:<id>``; ``client.send_direct(user, text)`` appends
to it and reaches every connection of that user. A user's client that joins its inbox
gets what arrived while it was offline replayed on reconnect.

Run: ``python examples/notifier.py`` (in-process: the service notifies alice and bob;
bob's network goes down for one notification, which reaches him when it comes back),
or against ``rtclient serve``, as a one-shot sender::

    python examples/notifier.py ws://127.0.0.1:8765/ws SERVICE_TOKEN alice "build passed"

(mint SERVICE_TOKEN with ``rtclient token --user notifier``; alice sees it in
``rtclient chat ws://127.0.0.1:8765/ws --room user:alice --user alice``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from fake_server import FakeServer
from rtclient import Backoff, Client, ConnectionState, Event
from rtclient.testing import FaultProxy

FAST = Backoff(base=0.05, cap=0.5, stable_after=1.0)


class Inbox:
    """A user's client, listening to its inbox room and printing what arrives."""

    def __init__(self, user: str, client: Client) -> None:
        self.user = user
        self.client = client
        self.received: asyncio.Queue[Event] = asyncio.Queue()
        client.on("dm:message", self.on_direct)

    def on_direct(self, event: Event) -> None:
        how = "replayed after reconnect" if event.replayed else "live"
        print(f"  {self.user} got #{event.event_id} from {event.sender} ({how}): {event.text}")
        self.received.put_nowait(event)

    async def open(self) -> None:
        await self.client.connect()
        await self.client.join(f"user:{self.user}")  # remembered: synced after reconnects

    async def next(self) -> Event:
        return await asyncio.wait_for(self.received.get(), 5)


async def notify(service: Client, user: str, text: str) -> None:
    ack = await service.send_direct(user, text)
    print(f"notifier -> {user}: {text!r} stored as #{ack.event_id} in {ack.room}")


async def demo() -> int:
    async with (
        FakeServer() as server,
        FaultProxy((server.host, server.port)) as bobs_network,
    ):
        service = Client(server.ws_url, token=server.issue_token("notifier"), backoff=FAST)
        alice = Inbox("alice", Client(server.ws_url, token=server.issue_token("alice")))
        bob = Inbox(
            "bob",
            Client(bobs_network.url("ws", "/ws"), token=server.issue_token("bob"), backoff=FAST),
        )
        await service.connect()
        await alice.open()
        await bob.open()
        try:
            await notify(service, "alice", "build #41 passed")
            await alice.next()
            await notify(service, "bob", "your review was requested")
            await bob.next()

            print("(bob's network goes down)")
            await bobs_network.down()
            await bob.client.wait_for(ConnectionState.RECONNECTING, timeout=5)
            await notify(service, "bob", "deploy finished while you were away")
            await bobs_network.up()
            missed = await bob.next()
            assert missed.replayed and missed.text == "deploy finished while you were away"
            print("bob stats:", {k: v for k, v in bob.client.stats().items() if v})
        finally:
            for client in (service, alice.client, bob.client):
                await client.close()
    return 0


async def send_once(url: str, token: str, user: str, text: str) -> int:
    async with Client(url, token=token) as service:
        await notify(service, user, text)
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Direct messages into user inboxes.")
    parser.add_argument("url", nargs="?", help="a running server (default: an in-process one)")
    parser.add_argument("token", nargs="?")
    parser.add_argument("user", nargs="?", help="who gets the message")
    parser.add_argument("text", nargs="?")
    args = parser.parse_args(argv)
    if args.url is None:
        return asyncio.run(demo())
    if args.text is None:
        parser.error("with a URL, give TOKEN USER TEXT")
    return asyncio.run(send_once(args.url, args.token, args.user, args.text))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
