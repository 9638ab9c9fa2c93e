"""A mention bot: answers every message that mentions ``@echobot``, even missed ones.

Run: ``python examples/mention_bot.py`` (starts its own FakeServer, has alice talk to the
bot across a server restart, prints the conversation, exits), or against
``rtclient serve``::

    python examples/mention_bot.py ws://127.0.0.1:8765/ws BOT_TOKEN [--room lobby]

which runs the bot until Ctrl-C (mint BOT_TOKEN with ``rtclient token --user echobot``;
then talk to it with ``rtclient chat ws://127.0.0.1:8765/ws --room lobby --user alice``).

The bot never answers itself, and it answers mentions it missed while it was away:
they are replayed to it (``event.replayed``) when it reconnects.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys

from fake_server import FakeServer
from rtclient import Backoff, Client, ConnectionState, Event

FAST = Backoff(base=0.05, cap=1.0, stable_after=1.0)


def reply_to(event: Event, bot: str) -> str | None:
    """The bot's answer to ``event``, or None if it is not a mention of ``bot``."""
    text = event.text
    if event.name != "chat:message" or text is None or event.sender in (None, bot):
        return None
    mention = re.compile(rf"@{re.escape(bot)}\b", re.IGNORECASE)
    if not mention.search(text):
        return None
    rest = re.sub(r"\s+([,.;:!?])", r"\1", " ".join(mention.sub("", text).split()))
    rest = rest.strip(" ,.;:")
    late = " (sorry, I was away)" if event.replayed else ""
    return f"@{event.sender} you said: {rest or '(nothing)'}{late}"


class MentionBot:
    """Joins rooms and answers mentions with ``send_nowait`` (queued if offline)."""

    def __init__(self, client: Client, name: str) -> None:
        self.client = client
        self.name = name
        self.answered = 0
        client.on("chat:message", self.on_message)

    def on_message(self, event: Event) -> None:
        answer = reply_to(event, self.name)
        if answer is not None and event.room is not None:
            self.client.send_nowait(event.room, answer)
            self.answered += 1


async def demo() -> int:
    """Alice talks to the bot in-process, before and during a server restart."""
    async with FakeServer() as server:
        bot_client = Client(server.ws_url, token=server.issue_token("echobot"), backoff=FAST)
        alice = Client(server.ws_url, token=server.issue_token("alice"), backoff=FAST)
        async with bot_client, alice:
            bot = MentionBot(bot_client, "echobot")
            await bot_client.join("lobby")
            await alice.join("lobby")
            answers: asyncio.Queue[Event] = asyncio.Queue()

            def from_bot(event: Event) -> None:
                if event.sender == "echobot":
                    answers.put_nowait(event)

            alice.on("chat:message", from_bot)

            async def say(text: str, expect_answer: bool = True) -> None:
                print(f"alice:   {text}")
                await alice.send("lobby", text)
                if expect_answer:
                    answer = await asyncio.wait_for(answers.get(), 5)
                    print(f"echobot: {answer.text}")

            await say("hello @echobot, are you there?")
            await say("just talking to myself", expect_answer=False)

            # The server goes away; alice's mention waits in her outbox, the bot's
            # answer comes once both are back.
            restart = asyncio.create_task(server.restart(downtime=0.5))
            await alice.wait_for(ConnectionState.RECONNECTING, timeout=5)
            print("(server restarting)")
            await say("@EchoBot did the restart hurt?")
            await restart
            print(f"echobot answered {bot.answered} mentions; the lobby log has", end=" ")
            print(f"{len(server.room_events('lobby'))} messages")
    return 0


async def serve(url: str, token: str, rooms: list[str], name: str) -> int:
    """Run the bot against a real server until Ctrl-C."""
    async with Client(url, token=token) as client:
        bot = MentionBot(client, name)
        for room in rooms:
            await client.join(room)
        print(f"{name} is listening in {', '.join(rooms)}; Ctrl-C to stop", flush=True)
        await client.wait_for(ConnectionState.CLOSED)
    print(f"answered {bot.answered} mentions")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url", nargs="?")
    parser.add_argument("token", nargs="?")
    parser.add_argument("--room", action="append", help="room to listen in (default lobby)")
    parser.add_argument("--name", default="echobot", help="the name people mention")
    args = parser.parse_args(argv)
    if args.url is None:
        return asyncio.run(demo())
    if args.token is None:
        parser.error("give the bot's token after the URL")
    try:
        return asyncio.run(serve(args.url, args.token, args.room or ["lobby"], args.name))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
