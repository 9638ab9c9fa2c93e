"""A bot on a plain WebSocket server: rtclient's resilience for any server's envelope.

``protocol="generic"`` on a raw transport speaks the seed guide's ``{"type",
"payload"}`` JSON envelope by default. The server here is a few lines in the seed's
style (token in the query string, a ``connected`` greeting, rooms forgotten with the
socket, a broadcast with ``from``, no acks); the bot rejoins its room from an
``on_connect`` hook after every reconnect, and what it emits while the server is away
waits in the outbox and goes out once, in order, after the rejoin.

Run: ``python examples/plain_websocket.py`` (starts its own server and cuts the bot
off mid-way), or against a server of that style (tests/interop/ws_server.js)::

    python examples/plain_websocket.py ws://127.0.0.1:3000/ secret-bot
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from rtclient import Backoff, Client, ConnectionState, Event

FAST = Backoff(base=0.05, cap=0.5, stable_after=1.0)


async def seed_style_server() -> tuple[Server, list[str], list[ServerConnection]]:
    """A server in the seed's style; returns it, the log of what it received and its
    connections in the order they came."""
    rooms: dict[str, set[ServerConnection]] = {}
    received: list[str] = []
    connections: list[ServerConnection] = []

    async def handle(ws: ServerConnection) -> None:
        assert ws.request is not None
        token = parse_qs(urlsplit(ws.request.path).query).get("token", [""])[0]
        if not token:
            await ws.close(4001, "Unauthorized")
            return
        connections.append(ws)
        await ws.send(json.dumps({"type": "connected", "payload": {"clientId": len(connections)}}))
        try:
            async for raw in ws:
                message = json.loads(raw)
                kind, payload = message["type"], message["payload"]
                received.append(f"{kind} {payload.get('text', payload.get('roomId'))}")
                if kind == "join:room":
                    room = rooms.setdefault(payload["roomId"], set())
                    room.add(ws)
                    joined = {"type": "user:joined", "payload": {"userId": token, **payload}}
                    for peer in room:
                        await peer.send(json.dumps(joined))
                elif kind == "room:message":
                    out = json.dumps({"type": kind, "payload": {**payload, "from": token}})
                    for peer in rooms.get(payload["roomId"], set()) - {ws}:  # not the sender
                        await peer.send(out)
        except ConnectionClosed:
            pass  # the cut below: the client comes back on a new connection
        finally:
            for members in rooms.values():
                members.discard(ws)

    return await serve(handle, "127.0.0.1", 0), received, connections


async def rejoin(c: Client) -> None:
    # The server forgets rooms with the socket: join on every connection. Written
    # before anything queued while offline.
    await c.emit("join:room", {"roomId": "lobby"}, ack=False)


async def run(url: str, token: str, cut: Callable[[], None] | None = None) -> int:
    bot = Client(url, protocol="generic", token=token, token_query="token", backoff=FAST)
    listener = Client(url, protocol="generic", token=token, token_query="token", backoff=FAST)
    heard: asyncio.Queue[Event] = asyncio.Queue()
    members: asyncio.Queue[Event] = asyncio.Queue()

    async def rejoin_and_say(c: Client) -> None:
        await rejoin(c)
        print("bot joined lobby")

    bot.on_connect(rejoin_and_say)
    bot.on("connected", lambda event: print(f"server greeting: {event.data}"))
    listener.on_connect(rejoin)
    listener.on("room:message", lambda event: heard.put_nowait(event))
    listener.on("user:joined", lambda event: members.put_nowait(event))
    async with listener:
        await asyncio.wait_for(members.get(), 5)  # the listener's own join
        async with bot:
            await asyncio.wait_for(members.get(), 5)  # the bot's join, seen by the listener
            await talk(bot, heard, cut)
    return 0


async def talk(bot: Client, heard: asyncio.Queue[Event], cut: Callable[[], None] | None) -> None:
    """Say hello, get cut off (``cut``: the in-process server drops the bot), say more."""
    await bot.emit("room:message", {"roomId": "lobby", "text": "hello"})
    event = await asyncio.wait_for(heard.get(), 5)
    print(f"{event.data['from']} said {event.data['text']!r}")
    if cut is not None:
        cut()  # no close frame: the bot finds out by itself
        await bot.wait_for(ConnectionState.RECONNECTING, timeout=5)
        print("cut off; emitting anyway")
    for text in ("one", "two", "three"):
        bot.emit_nowait("room:message", {"roomId": "lobby", "text": text}, ack=False)
    for _ in range(3):
        event = await asyncio.wait_for(heard.get(), 5)
        print(f"{event.data['from']} said {event.data['text']!r}")
    print("stats:", {k: v for k, v in bot.stats().items() if v})


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="rtclient's generic mode on a plain WebSocket.")
    parser.add_argument("url", nargs="?", help="ws://host:port/ (default: an in-process server)")
    parser.add_argument("token", nargs="?", default="secret-bot", help="the token (?token=)")
    args = parser.parse_args(argv)
    if args.url is not None:
        return await run(args.url, args.token, None)
    server, received, connections = await seed_style_server()
    async with server:
        port = server.sockets[0].getsockname()[1]
        # The bot's connection is the latest: cut it, without a close frame.
        status = await run(
            f"ws://127.0.0.1:{port}/", args.token, lambda: connections[-1].transport.abort()
        )
    print("the server received:", received)
    return status


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
