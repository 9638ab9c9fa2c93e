"""A generic Socket.IO client: rtclient's reconnects and outbox for any Socket.IO server.

``protocol="generic"`` speaks plain Socket.IO events — ``emit`` (queued while offline,
sent again until acked, with a ``messageId`` in the data so the server can drop
duplicates), ``call`` (a request answered by the ack), ``on`` (any event) and
``on_connect`` (hooks run after every reconnect, before queued events flush: the place
to resubscribe). Here the server is fake_server's Socket.IO endpoint, so the events
happen to be ``room:join`` / ``chat:send`` / ``chat:message``; any server's events work
the same way.

Run: ``python examples/socketio_client.py`` (starts its own FakeServer; the connection
drops mid-way and the queued emit still arrives once), or against ``rtclient serve``::

    python examples/socketio_client.py http://127.0.0.1:8765 TOKEN
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from fake_server import FakeServer
from rtclient import Backoff, Client, ConnectionState, Event

FAST = Backoff(base=0.05, cap=0.5, stable_after=1.0)
ROOM = "sio-demo"


async def run(url: str, token: str, server: FakeServer | None) -> int:
    client = Client(url, token=token, transport="socketio", protocol="generic", backoff=FAST)
    heard: asyncio.Queue[Event] = asyncio.Queue()

    async def subscribe(c: Client) -> None:
        # The server forgets subscriptions with the connection: subscribe on every connect.
        reply = await c.call("room:join", {"roomId": ROOM})
        print(f"(re)subscribed to {ROOM}: members {reply['members']}")

    def on_message(event: Event) -> None:
        print(f"event {event.name}: {event.data.get('from')} said {event.data.get('text')!r}")
        heard.put_nowait(event)

    client.on_connect(subscribe)
    client.on("chat:message", on_message)
    async with client:
        reply: Any = await client.emit("chat:send", {"roomId": ROOM, "text": "hello"})
        print(f"emit acked: eventId {reply['eventId']}, duplicate {reply['duplicate']}")
        await asyncio.wait_for(heard.get(), 5)

        if server is not None:
            await server.drop_connections()  # the link breaks; emit() waits in the outbox
            await client.wait_for(ConnectionState.RECONNECTING, timeout=5)
            print("connection dropped; emitting anyway")
        reply = await client.emit("chat:send", {"roomId": ROOM, "text": "sent across a drop"})
        print(f"emit acked: eventId {reply['eventId']}, duplicate {reply['duplicate']}")
        await asyncio.wait_for(heard.get(), 5)

        members = await client.call("room:members", {"roomId": ROOM})
        print(f"call room:members -> {members['members']}")
        print("stats:", {k: v for k, v in client.stats().items() if v})
    return 0


async def main(argv: list[str]) -> int:
    # engine.io logs a warning for every closed connection; the state events say it all.
    logging.getLogger("engineio.client").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description="rtclient's generic Socket.IO mode, end to end.")
    parser.add_argument("url", nargs="?", help="http://host:port (default: an in-process server)")
    parser.add_argument("token", nargs="?", help="a token for that server")
    args = parser.parse_args(argv)
    if args.url is not None:
        if args.token is None:
            parser.error("with a URL, give a token")
        return await run(args.url, args.token, None)
    async with FakeServer() as server:
        return await run(server.sio_url, server.issue_token("sio-user"), server)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
