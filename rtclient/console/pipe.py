"""``rtclient chat`` for scripts: stdin lines are sent, everything comes out as JSON lines.

Each non-blank input line is sent to the first ``--room``. Stdout gets one JSON object
per line: every server event (``{"event": "chat:message", "room", "from", "text",
"eventId", "replayed", …}``), every state change, gap, quality change and error, and
for each input line an ``ack`` (or ``failed``) record. At end of input the outbox is
flushed (``close(flush=True)``) and the exit status is 0 if every line was
acknowledged, 1 otherwise or on a fatal error (described on stderr), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import threading
from collections.abc import Callable
from typing import TextIO

from ..client import Client
from ..dispatch import Delivered
from ..errors import RtClientError
from ..events import ConnectionState, StateChanged
from .render import ack_record, describe_error, failure_record, item_record, json_line

__all__ = ["feed_lines", "pipe", "run_pipe"]

_KINDS = ("*", "state", "gap", "error", "quality")
_EOF = None


def _stdout_line(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def feed_lines(queue: asyncio.Queue[str | None], stream: TextIO | None = None) -> None:
    """Read ``stream`` (default: stdin) in a daemon thread into ``queue``; None at EOF.

    A daemon thread, so that a fatal error can end the program while a read is blocked.
    """
    loop = asyncio.get_running_loop()
    source = stream or io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")

    def read() -> None:
        try:
            while line := source.readline():
                loop.call_soon_threadsafe(queue.put_nowait, line)
            loop.call_soon_threadsafe(queue.put_nowait, _EOF)
        except (RuntimeError, ValueError, OSError):
            return  # the loop or the stream is closed: the program is ending

    threading.Thread(target=read, name="rtclient stdin", daemon=True).start()


async def run_pipe(args: argparse.Namespace) -> int:
    """``rtclient chat`` with stdin not a terminal; returns the exit status."""
    from .chat import open_client

    client = await open_client(args)
    if isinstance(client, int):
        return client
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    feed_lines(queue)
    return await pipe(client, args.room, queue)


async def pipe(
    client: Client,
    rooms: list[str],
    lines: asyncio.Queue[str | None],
    *,
    write: Callable[[str], None] = _stdout_line,
    error: Callable[[str], None] = lambda text: print(text, file=sys.stderr),
) -> int:
    """Send each line from ``lines`` (None ends them) to ``rooms[0]``; write JSON lines.

    Returns the exit status; ``client`` is closed when it returns.
    """
    fatal: list[BaseException] = []

    def record(item: Delivered) -> None:
        write(json_line(item_record(item)))
        if isinstance(item, StateChanged) and item.new is ConnectionState.CLOSED:
            if item.error is not None:
                fatal.append(item.error)
            lines.put_nowait(_EOF)  # stop reading: nothing more can be sent

    for kind in _KINDS:
        client.on(kind, record)
    try:
        await client.connect()
        for room in rooms:
            await client.join(room)
    except RtClientError as exc:
        await client.close(flush=False)
        error(f"rtclient chat: {describe_error(fatal[0] if fatal else exc)}")
        return 1

    async def deliver(text: str, number: int) -> bool:
        try:
            ack = await client.send(rooms[0], text)
        except RtClientError as exc:
            write(json_line(failure_record(rooms[0], text, number, exc)))
            return False
        write(json_line(ack_record(ack, text, number)))
        return True

    sends: list[asyncio.Task[bool]] = []
    while (line := await lines.get()) is not _EOF:
        text = line.rstrip("\r\n")
        if text.strip() and client.state is not ConnectionState.CLOSED:
            sends.append(asyncio.create_task(deliver(text, len(sends) + 1)))
            await asyncio.sleep(0)  # let it reach the outbox before close() looks there
    await client.close(flush=True)
    delivered = await asyncio.gather(*sends)
    if fatal:
        error(f"rtclient chat: {describe_error(fatal[0])}")
        return 1
    if not all(delivered):
        error(f"rtclient chat: {delivered.count(False)} line(s) not delivered")
        return 1
    return 0
