"""A huge paste into the interactive chat costs what the line costs.

Was: a 100 KB paste froze the chat for 37 s and grew it to 5.2 GB (prompt_toolkit
handled every character as a key press of its own). Now a run of characters read at
once is one paste, and a paste past the 8,000-character limit is refused at once.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time

from prompt_toolkit.key_binding.key_processor import KeyPress
from prompt_toolkit.keys import Keys

from fake_server import FakeServer
from rtclient.console.keys import coalesce
from rtclient.console.lines import MAX_TEXT_CHARS

from .conftest import SECRET, eventually
from .test_interactive import Chat, running_chat

PASTE = 100_000


async def type_in_chunks(chat: Chat, text: str) -> None:
    """Type ``text`` from a thread: the pipe (64 KB) is read by this very loop."""
    await asyncio.to_thread(chat.type, text)


def test_coalesce_makes_runs_of_plain_characters_one_paste() -> None:
    presses = [KeyPress(c, c) for c in "abc"] + [KeyPress(Keys.ControlM, "\r"), KeyPress("d", "d")]
    assert coalesce(presses) == [
        KeyPress(Keys.BracketedPaste, "abc"),
        KeyPress(Keys.ControlM, "\r"),
        KeyPress("d", "d"),
    ]


async def test_a_100_kb_paste_is_refused_at_once_and_the_chat_goes_on(
    server: FakeServer,
) -> None:
    async with running_chat(server) as chat:
        await chat.wait_line("· joined lobby")
        await type_in_chunks(chat, "x" * PASTE)  # plain characters, as `tmux send-keys` sends
        line = await chat.wait_line("· not inserted")
        assert "8,000-character limit" in line  # read in pieces: said at the first over it
        assert chat.controller is not None
        chat.type("\x15")  # Ctrl-U: an empty line again
        chat.lines.clear()
        await type_in_chunks(chat, "\x1b[200~" + "y" * PASTE + "\x1b[201~")  # bracketed
        await chat.wait_line(f"{PASTE:,} characters")
        chat.type("\x15short one\r")  # Ctrl-U, then a message
        await chat.wait_line("✓ #1  [lobby] short one")
    assert [e["text"] for e in server.room_events("lobby")] == ["short one"]


async def test_an_unbracketed_paste_read_in_pieces_leaves_none_of_it_in_the_line(
    server: FakeServer,
) -> None:
    # Was: the pieces read before the one that passed the limit stayed in the line (a
    # 100 KB paste from tmux left its first 7,840 characters; Enter sent them), and a
    # short last piece could be appended after the gap.
    async with running_chat(server) as chat:
        await chat.wait_line("· joined lobby")
        assert chat.session is not None
        buffer = chat.session.default_buffer
        chat.type("hi ")
        await eventually(lambda: buffer.text == "hi ")
        chat.type("p" * 4096)  # a terminal's first read of the paste: it fits
        await eventually(lambda: len(buffer.text) == 4099)
        for start in range(4096, PASTE, 4096):
            await type_in_chunks(chat, "p" * min(4096, PASTE - start))
        chat.type("\r")  # Enter, after the whole paste: sends the line as it was before it
        await chat.wait_line("· not inserted")
        await chat.wait_line("✓ #1")
    assert [e["text"] for e in server.room_events("lobby")] == ["hi"]


async def test_typing_past_the_limit_is_cut_back(server: FakeServer) -> None:
    async with running_chat(server) as chat:
        await chat.wait_line("· joined lobby")
        chat.type("\x1b[200~" + "z" * (MAX_TEXT_CHARS - 1) + "\x1b[201~")
        assert chat.session is not None
        buffer = chat.session.default_buffer
        await eventually(lambda: len(buffer.text) == MAX_TEXT_CHARS - 1)
        chat.type("z")
        await eventually(lambda: len(buffer.text) == MAX_TEXT_CHARS)
        chat.type("z")  # one over: cut back, and said
        line = await chat.wait_line("· not inserted")
        assert "8,001 characters" in line and len(buffer.text) == MAX_TEXT_CHARS
        chat.type("\r")
        await chat.wait_line("✓ #1")
    assert [len(e["text"]) for e in server.room_events("lobby")] == [MAX_TEXT_CHARS]


def _rss_mb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return 0


def _paste_in_a_terminal(url: str) -> tuple[bool, int, bytes]:
    """Run `rtclient chat` on a real pty, paste 100 KB unbracketed, then type a key.

    Returns (the key was echoed, peak RSS in MB, the screen's bytes).
    """
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    command = [sys.executable, "-m", "rtclient.cli", "chat", url, "--room", "lobby"]
    chat = subprocess.Popen(
        [*command, "--user", "u", "--secret", SECRET],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**os.environ, "TERM": "xterm-256color"},
        start_new_session=True,
    )
    os.close(slave)
    screen = bytearray()
    peak = 0

    def pump(seconds: float, until: bytes | None = None) -> bool:
        nonlocal peak
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if until is not None and until in screen:
                return True
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    screen.extend(os.read(master, 65536))
                except OSError:
                    return False
            peak = max(peak, _rss_mb(chat.pid))
        return until is not None and until in screen

    try:
        assert pump(20, b"joined lobby"), bytes(screen[-500:])
        data = b"q" * PASTE
        for start in range(0, len(data), 4096):
            os.write(master, data[start : start + 4096])
            pump(0.001)
        refused = pump(20, b"not inserted")
        os.write(master, b"\x15!")  # Ctrl-U, then a key: it shows when the chat is free
        screen.clear()
        echoed = refused and pump(20, b"!")
        closed = False
        for _ in range(6):  # under load a key can land mid-redraw: press Ctrl-D again
            os.write(master, b"\x15\x04")  # Ctrl-U, Ctrl-D
            closed = pump(5, b"closed")
            if closed:
                break
        assert closed, bytes(screen[-1000:])
        chat.wait(10)
        return echoed, peak, bytes(screen)
    finally:
        if chat.poll() is None:
            chat.kill()
            chat.wait()
        os.close(master)


async def test_a_100_kb_paste_in_a_real_terminal_stays_small_and_responsive(
    server: FakeServer,
) -> None:
    echoed, peak, screen = await asyncio.to_thread(_paste_in_a_terminal, server.ws_url)
    assert echoed, screen[-500:]
    assert 0 < peak < 300, f"{peak} MB"  # was 5.2 GB
