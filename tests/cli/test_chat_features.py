"""What a terminal chat client is expected to do: history on join, /dm, times, colours."""

from __future__ import annotations

import re
import time

from fake_server import FakeServer
from rtclient.console.commands import Command, parse_line
from rtclient.console.render import paint

from .test_interactive import connected, running_chat


async def test_the_last_messages_of_a_room_are_shown_on_join_as_history(
    server: FakeServer,
) -> None:
    bob = await connected(server, "bob", "lobby")
    try:
        for i in range(12):
            await bob.send("lobby", f"old {i}")
        async with running_chat(server) as chat:
            await chat.wait_line("old 11")
            await bob.send("lobby", "new one")
            await chat.wait_line("bob: new one")
        history = [line for line in chat.lines if line.endswith("(history)")]
        assert [line.split(": ")[1].removesuffix(" (history)") for line in history] == [
            f"old {i}" for i in range(2, 12)
        ]  # the last 10, in order, once
        assert re.match(r"\d\d:\d\d \[lobby\] #3 bob: old 2 \(history\)", history[0])
        live = next(line for line in chat.lines if "new one" in line)
        assert not live.endswith("(history)")
        assert live.startswith(time.strftime("%H:")) or re.match(r"\d\d:\d\d ", live)
    finally:
        await bob.close()


async def test_dm_sends_to_one_user(server: FakeServer) -> None:
    bob = await connected(server, "bob")
    got: list[str] = []
    bob.on("dm:message", lambda event: got.append(f"{event.sender}: {event.text}"))
    try:
        async with running_chat(server) as chat:
            await chat.wait_line("· joined lobby")
            chat.type("/dm bob hello there\r")
            await chat.wait_line("✓ #")
            assert chat.saw("[dm → bob] hello there")
            chat.type("/dm bob\r")
            await chat.wait_line("usage: /dm USER TEXT")
        assert got == ["alice: hello there"]
    finally:
        await bob.close()


def test_parse_dm() -> None:
    assert parse_line("/dm bob hi there ") == Command("dm", "bob", text="hi there")
    assert parse_line("/msg bob x") == Command("dm", "bob", text="x")
    assert parse_line("/dm bob").error == "usage: /dm USER TEXT"  # type: ignore[union-attr]


def test_each_user_has_a_colour_of_their_own() -> None:
    line = "[lobby] #1 bob: hi bob"
    assert paint(line, "bob", False) == line
    painted = paint(line, "bob", True)
    assert painted.startswith("[lobby] #1 \x1b[") and painted.endswith("bob\x1b[0m: hi bob")
    assert paint(line, "bob", True) == painted  # the same colour every time
    colours = {paint("x " + name, name, True).split("m")[0] for name in "abcdefgh"}
    assert len(colours) > 1
